//! The prototype bank against hand-computed updates.

mod common;

use burn::backend::Flex;
use burn::prelude::*;
use common::*;
use lvface_loss::{Momentum, PrototypeBank, PrototypeBankConfig};

fn bank(momentum: Momentum) -> PrototypeBank<Flex> {
    PrototypeBankConfig {
        momentum,
        margin_k: 0.7,
    }
    .init(3, 2, &Default::default())
}

fn batch(rows: &[[f32; 2]], y: &[i64]) -> (Tensor<Flex, 2>, Tensor<Flex, 1, Int>) {
    let device = Default::default();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let x = Tensor::from_data(TensorData::new(flat, [rows.len(), 2]), &device);
    let y = Tensor::from_data(TensorData::new(y.to_vec(), [y.len()]), &device);
    (x, y)
}

/// A momentum rule written as a function of the similarity.
type Rule = fn(f64) -> f64;

fn close(got: &[f64], expected: &[f64]) {
    assert!(
        max_rel_err(got, expected, 1.0) < 1e-6,
        "{got:?} vs {expected:?}"
    );
}

/// `normalize(α·p + (1 - α)·x̂)` and the length update, written out.
fn step(p: [f64; 2], r: f64, x: [f64; 2], alpha_of: impl Fn(f64) -> f64) -> ([f64; 2], f64) {
    let n = (x[0] * x[0] + x[1] * x[1]).sqrt();
    let x = [x[0] / n, x[1] / n];
    let s = p[0] * x[0] + p[1] * x[1];
    let seen = p[0] * p[0] + p[1] * p[1] > 0.25;
    let a = alpha_of(s);
    let v = [a * p[0] + (1.0 - a) * x[0], a * p[1] + (1.0 - a) * x[1]];
    let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
    let s_len = if seen { s } else { 1.0 };
    ([v[0] / n, v[1] / n], a * r + (1.0 - a) * s_len)
}

#[test]
fn softsign_update_by_hand() {
    let mut bank = bank(Momentum::Softsign);
    let (x, y) = batch(&[[3.0, 4.0]], &[0]);
    bank.update(x, y);
    // First sighting: P_0 = x̂ = (0.6, 0.8), length stays 1.
    close(&values(bank.prototypes()), &[0.6, 0.8, 0.0, 0.0, 0.0, 0.0]);
    let (x, y) = batch(&[[1.0, 0.0]], &[0]);
    bank.update(x, y);
    // s = 0.6, α = 0.6/1.6 = 0.375, P = normalize(0.375·(0.6, 0.8) + 0.625·(1, 0))
    //   = (0.85, 0.3)/sqrt(0.8125); length = 0.375·1 + 0.625·0.6 = 0.75.
    let n = 0.8125f64.sqrt();
    close(
        &values(bank.prototypes()),
        &[0.85 / n, 0.3 / n, 0.0, 0.0, 0.0, 0.0],
    );
    close(&values(bank.lengths()), &[0.75, 1.0, 1.0]);
}

#[test]
fn sigmoid_and_fixed_momentum_follow_their_rules() {
    let rows = [[3.0, 4.0], [1.0, 0.0], [-1.0, 2.0]];
    let rules: [(Momentum, Rule); 2] = [
        (Momentum::Sigmoid, |s| 1.0 / (1.0 + (1.0 - s).exp())),
        (Momentum::Fixed(0.9), |_| 0.9),
    ];
    for (momentum, alpha) in rules {
        let mut bank = bank(momentum);
        let (mut p, mut r) = ([0.0, 0.0], 1.0);
        for row in rows {
            let (x, y) = batch(&[row], &[2]);
            bank.update(x, y);
            (p, r) = step(p, r, [row[0] as f64, row[1] as f64], alpha);
        }
        close(
            &values(bank.prototypes()),
            &[0.0, 0.0, 0.0, 0.0, p[0], p[1]],
        );
        close(&values(bank.lengths()), &[1.0, 1.0, r]);
    }
}

#[test]
fn duplicate_labels_apply_in_batch_order() {
    let rows = [[3.0, 4.0], [0.0, 1.0], [1.0, 0.0], [2.0, -1.0], [1.0, 1.0]];
    let labels = [0, 1, 0, -1, 0];
    let mut together = bank(Momentum::Softsign);
    let (x, y) = batch(&rows, &labels);
    together.update(x, y);
    // The same samples one at a time, and by hand.
    let mut one_by_one = bank(Momentum::Softsign);
    let (mut p, mut r) = ([0.0, 0.0], 1.0);
    for (row, &label) in rows.iter().zip(&labels) {
        let (x, y) = batch(&[*row], &[label]);
        one_by_one.update(x, y);
        if label == 0 {
            (p, r) = step(p, r, [row[0] as f64, row[1] as f64], |s| {
                s / (1.0 + s.abs())
            });
        }
    }
    let got = values(together.prototypes());
    close(&got, &values(one_by_one.prototypes()));
    close(&got[..2], &p);
    close(&got[2..4], &[0.0, 1.0]);
    close(&got[4..], &[0.0, 0.0]);
    close(&values(together.lengths())[..1], &[r]);
    // Another order gives another prototype: the rule is order-dependent, and deterministic.
    let mut reversed = bank(Momentum::Softsign);
    let (x, y) = batch(&[rows[4], rows[2], rows[0]], &[0, 0, 0]);
    reversed.update(x, y);
    assert!(max_rel_err(&values(reversed.prototypes())[..2], &p, 1.0) > 1e-3);
}

#[test]
fn no_gradient_reaches_the_bank() {
    let device = Default::default();
    let mut bank = PrototypeBankConfig::default().init::<B>(3, 2, &device);
    let x = Tensor::<B, 2>::from_floats([[3.0, 4.0], [1.0, -1.0]], &device).require_grad();
    bank.update(x.clone(), labels(&[0, 2]));
    assert!(!bank.prototypes().is_require_grad() && !bank.lengths().is_require_grad());
    let logits = bank.forward_logits(x.clone(), labels(&[0, 2]));
    let grads = logits.sum().backward();
    assert!(bank.prototypes().grad(&grads).is_none());
    // The embeddings do get a gradient, through the prototype cosines.
    let g = values(x.grad(&grads).unwrap());
    assert!(g.iter().any(|v| v.abs() > 1e-3), "{g:?}");
}

#[test]
fn prototype_logits_carry_the_adaptive_margin() {
    let mut bank = bank(Momentum::Softsign);
    let (x, y) = batch(&[[1.0, 0.0], [0.0, 1.0]], &[0, 1]);
    bank.update(x, y);
    let (x, y) = batch(&[[3.0, 4.0], [3.0, 4.0]], &[1, -1]);
    let got = values(bank.forward_logits(x, y));
    // cos with P_0 = (1, 0) is 0.6, with P_1 = (0, 1) 0.8, with the empty P_2 0. Row 0's target
    // (class 1) is (1 - 0.7)·0.8; row 1 has no target.
    close(&got, &[0.6, 0.3 * 0.8, 0.0, 0.6, 0.8, 0.0]);
    close(
        &values(bank.expectation_length(labels(&[1, -1]).inner())),
        &[1.0, 1.0],
    );
}

#[test]
fn saves_and_loads() {
    let mut bank = bank(Momentum::Softsign);
    let (x, y) = batch(&[[3.0, 4.0], [1.0, 0.0], [-2.0, 1.0]], &[0, 0, 2]);
    bank.update(x, y);
    let dir = std::env::temp_dir().join(format!("lvface-loss-bank-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bank.safetensors");
    bank.save(&path).unwrap();
    let mut loaded = self::bank(Momentum::Softsign);
    loaded.load(&path).unwrap();
    assert_eq!(values(loaded.prototypes()), values(bank.prototypes()));
    assert_eq!(values(loaded.lengths()), values(bank.lengths()));
    let mut wrong = PrototypeBankConfig::default().init::<Flex>(4, 2, &Default::default());
    let message = wrong.load(&path).unwrap_err().to_string();
    assert!(
        message.contains("prototypes") && message.contains("shape"),
        "{message}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn validation_names_key_and_value() {
    let c = PrototypeBankConfig {
        momentum: Momentum::Fixed(1.5),
        margin_k: 0.7,
    };
    let m = c.validate().unwrap_err().to_string();
    assert!(
        m.contains("prototypes.momentum.fixed") && m.contains("1.5"),
        "{m}"
    );
    let c = PrototypeBankConfig {
        margin_k: -0.2,
        ..Default::default()
    };
    let m = c.validate().unwrap_err().to_string();
    assert!(
        m.contains("prototypes.margin_k") && m.contains("-0.2"),
        "{m}"
    );
}
