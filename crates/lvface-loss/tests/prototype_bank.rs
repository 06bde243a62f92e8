//! The prototype bank against hand-computed updates, and its length estimate against samples of
//! known mean length.

#![allow(clippy::print_stderr)] // The measured lengths are printed for the record.

mod common;

use burn::backend::Flex;
use burn::module::Param;
use burn::prelude::*;
use burn_store::{ModuleStore, SafetensorsStore};
use common::*;
use lvface_loss::{Momentum, PrototypeBank, PrototypeBankConfig};

fn bank(momentum: Momentum) -> PrototypeBank<Flex> {
    PrototypeBankConfig {
        momentum,
        margin_k: 0.7,
        length_momentum: 0.9,
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

/// A class's state written out: prototype, mean, squared length.
#[derive(Clone, Copy)]
struct State {
    p: [f64; 2],
    m: [f64; 2],
    q: f64,
}

const START: State = State {
    p: [0.0, 0.0],
    m: [0.0, 0.0],
    q: 1.0,
};

/// `normalize(α·p + (1 - α)·x̂)` and the length update (momentum 0.9), written out.
fn step(st: State, x: [f64; 2], alpha_of: impl Fn(f64) -> f64) -> State {
    let State { p, m, q } = st;
    let n = (x[0] * x[0] + x[1] * x[1]).sqrt();
    let x = [x[0] / n, x[1] / n];
    let s = p[0] * x[0] + p[1] * x[1];
    let seen = p[0] * p[0] + p[1] * p[1] > 0.25;
    let a = alpha_of(s);
    let v = [a * p[0] + (1.0 - a) * x[0], a * p[1] + (1.0 - a) * x[1]];
    let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
    let p = [v[0] / n, v[1] / n];
    if !seen {
        return State { p, m: x, q };
    }
    let dot = x[0] * m[0] + x[1] * m[1];
    State {
        p,
        m: [0.9 * m[0] + 0.1 * x[0], 0.9 * m[1] + 0.1 * x[1]],
        q: 0.9 * q + 0.1 * dot,
    }
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
    //   = (0.85, 0.3)/sqrt(0.8125). The length: ⟨x̂, m⟩ = 0.6 with the old mean (0.6, 0.8),
    //   q = 0.9·1 + 0.1·0.6 = 0.96, length √0.96; m = 0.9·(0.6, 0.8) + 0.1·(1, 0) = (0.64, 0.72).
    let n = 0.8125f64.sqrt();
    close(
        &values(bank.prototypes()),
        &[0.85 / n, 0.3 / n, 0.0, 0.0, 0.0, 0.0],
    );
    close(&values(bank.squared_lengths()), &[0.96, 1.0, 1.0]);
    close(&values(bank.lengths()), &[0.96f64.sqrt(), 1.0, 1.0]);
    close(&values(bank.means()), &[0.64, 0.72, 0.0, 0.0, 0.0, 0.0]);
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
        let mut st = START;
        for row in rows {
            let (x, y) = batch(&[row], &[2]);
            bank.update(x, y);
            st = step(st, [row[0] as f64, row[1] as f64], alpha);
        }
        close(
            &values(bank.prototypes()),
            &[0.0, 0.0, 0.0, 0.0, st.p[0], st.p[1]],
        );
        close(
            &values(bank.means()),
            &[0.0, 0.0, 0.0, 0.0, st.m[0], st.m[1]],
        );
        close(&values(bank.squared_lengths()), &[1.0, 1.0, st.q]);
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
    let mut st = START;
    for (row, &label) in rows.iter().zip(&labels) {
        let (x, y) = batch(&[*row], &[label]);
        one_by_one.update(x, y);
        if label == 0 {
            st = step(st, [row[0] as f64, row[1] as f64], |s| s / (1.0 + s.abs()));
        }
    }
    let got = values(together.prototypes());
    close(&got, &values(one_by_one.prototypes()));
    close(&got[..2], &st.p);
    close(&got[2..4], &[0.0, 1.0]);
    close(&got[4..], &[0.0, 0.0]);
    close(&values(together.means())[..2], &st.m);
    close(&values(together.squared_lengths()), &[st.q, 1.0, 1.0]);
    // Another order gives another prototype: the rule is order-dependent, and deterministic.
    let mut reversed = bank(Momentum::Softsign);
    let (x, y) = batch(&[rows[4], rows[2], rows[0]], &[0, 0, 0]);
    reversed.update(x, y);
    assert!(max_rel_err(&values(reversed.prototypes())[..2], &st.p, 1.0) > 1e-3);
}

#[test]
fn no_gradient_reaches_the_bank() {
    let device = Default::default();
    let mut bank = PrototypeBankConfig::default().init::<B>(3, 2, &device);
    let x = Tensor::<B, 2>::from_floats([[3.0, 4.0], [1.0, -1.0]], &device).require_grad();
    bank.update(x.clone(), labels(&[0, 2]));
    assert!(!bank.prototypes().is_require_grad() && !bank.means().is_require_grad());
    assert!(!bank.squared_lengths().is_require_grad());
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
    assert_eq!(values(loaded.means()), values(bank.means()));
    assert_eq!(
        values(loaded.squared_lengths()),
        values(bank.squared_lengths())
    );
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
        ..Default::default()
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
    for bad in [1.0, -0.1, f64::NAN] {
        let c = PrototypeBankConfig {
            length_momentum: bad,
            ..Default::default()
        };
        let m = c.validate().unwrap_err().to_string();
        assert!(
            m.contains("prototypes.length_momentum must be in [0, 1)")
                && m.contains(&bad.to_string()),
            "{m}"
        );
    }
}

/// The layout banks were saved in before they kept class means (in a module of its own: the
/// derive needs the backend parameter named `B`, which `common` uses as a type).
mod earlier {
    use burn::module::{Module, Param};
    use burn::prelude::*;

    #[derive(Module, Debug)]
    pub struct EarlierBank<B: Backend> {
        pub prototypes: Param<Tensor<B, 2>>,
        pub lengths: Param<Tensor<B, 1>>,
    }
}
use earlier::EarlierBank;

#[test]
fn loads_the_earlier_layout() {
    let device = Default::default();
    let (p, r) = ([0.6, 0.8, 0.0, 0.0, 1.0, 0.0], [0.5, 1.0, 0.25]);
    let earlier = EarlierBank::<Flex> {
        prototypes: Param::from_tensor(Tensor::from_data(
            TensorData::new(p.map(|v| v as f32).to_vec(), [3, 2]),
            &device,
        )),
        lengths: Param::from_tensor(Tensor::from_data(
            TensorData::new(r.map(|v| v as f32).to_vec(), [3]),
            &device,
        )),
    };
    let dir = std::env::temp_dir().join(format!("lvface-loss-earlier-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bank.safetensors");
    SafetensorsStore::from_file(&path)
        .overwrite(true)
        .collect_from::<Flex, _>(&earlier)
        .unwrap();
    let mut loaded = bank(Momentum::Softsign);
    loaded.load(&path).unwrap();
    close(&values(loaded.prototypes()), &p);
    close(&values(loaded.lengths()), &r);
    // The mean starts at length · prototype.
    close(&values(loaded.means()), &[0.3, 0.4, 0.0, 0.0, 0.25, 0.0]);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Deterministic standard normal draws: Box–Muller over xorshift64*.
struct Gauss(u64);

impl Gauss {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn next(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    fn unit(&mut self, dim: usize) -> Vec<f64> {
        let v: Vec<f64> = (0..dim).map(|_| self.next()).collect();
        let n = dot(&v, &v).sqrt();
        v.iter().map(|a| a / n).collect()
    }

    /// `normalize(direction + σ·g)`, `g` isotropic standard normal.
    fn sample(&mut self, direction: &[f64], sigma: f64) -> Vec<f64> {
        let v: Vec<f64> = direction.iter().map(|d| d + sigma * self.next()).collect();
        let n = dot(&v, &v).sqrt();
        v.iter().map(|a| a / n).collect()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn length_estimate_is_unbiased_where_the_prototype_ema_is_not() {
    const DIM: usize = 512;
    const STEPS: usize = 600;
    // The first 100 steps let the prior q = 1 fade (0.9^100 ≈ 3e-5).
    const WARM: usize = 100;
    // Noise that gives mean lengths of about 0.5, 0.7 and 0.9: ‖x‖² ≈ 1 + DIM·σ².
    let sigmas: Vec<f64> = [0.5f64, 0.7, 0.9]
        .iter()
        .map(|r| ((1.0 / (r * r) - 1.0) / DIM as f64).sqrt())
        .collect();
    let classes = sigmas.len();
    let mut g = Gauss(0x5EED_1234_ABCD_0001);
    let directions: Vec<Vec<f64>> = (0..classes).map(|_| g.unit(DIM)).collect();
    // The truth, from 4000 samples a class: by symmetry E x̂ lies along the class direction, so
    // ‖E x̂‖ = E⟨x̂, d⟩.
    let truth: Vec<f64> = (0..classes)
        .map(|c| {
            let n = 4000;
            (0..n)
                .map(|_| dot(&g.sample(&directions[c], sigmas[c]), &directions[c]))
                .sum::<f64>()
                / n as f64
        })
        .collect();

    let device = Default::default();
    let mut bank = PrototypeBankConfig::default().init::<Flex>(classes, DIM, &device);
    // The rule this bank replaced, by hand: EPL's prototype P (softsign) and r ← α·r + (1 - α)·s
    // with s = ⟨x̂, P⟩; and the same EMA of s with a fixed momentum 0.9.
    let mut p = vec![vec![0.0; DIM]; classes];
    let mut softsign_r = vec![1.0; classes];
    let mut fixed_r = vec![1.0; classes];
    let mut sums = vec![[0.0f64; 3]; classes];
    let labels: Vec<i64> = (0..classes as i64).collect();
    for t in 0..STEPS {
        let xs: Vec<Vec<f64>> = (0..classes)
            .map(|c| g.sample(&directions[c], sigmas[c]))
            .collect();
        let flat: Vec<f32> = xs.iter().flatten().map(|&v| v as f32).collect();
        bank.update(
            Tensor::from_data(TensorData::new(flat, [classes, DIM]), &device),
            Tensor::from_data(TensorData::new(labels.clone(), [classes]), &device),
        );
        for c in 0..classes {
            let s = dot(&xs[c], &p[c]);
            let seen = dot(&p[c], &p[c]) > 0.25;
            let a = s / (1.0 + s.abs());
            let s_len = if seen { s } else { 1.0 };
            softsign_r[c] = a * softsign_r[c] + (1.0 - a) * s_len;
            fixed_r[c] = 0.9 * fixed_r[c] + 0.1 * s_len;
            let v: Vec<f64> = p[c]
                .iter()
                .zip(&xs[c])
                .map(|(p, x)| a * p + (1.0 - a) * x)
                .collect();
            let n = dot(&v, &v).sqrt();
            p[c] = v.iter().map(|v| v / n).collect();
        }
        if t >= WARM {
            let lengths = values(bank.lengths());
            for c in 0..classes {
                sums[c][0] += lengths[c];
                sums[c][1] += softsign_r[c];
                sums[c][2] += fixed_r[c];
            }
        }
    }
    let mean = |c: usize, k: usize| sums[c][k] / (STEPS - WARM) as f64;
    for (c, truth) in truth.iter().enumerate() {
        let (bank, softsign, fixed) = (mean(c, 0), mean(c, 1), mean(c, 2));
        let report = format!(
            "class {c}: truth {truth:.4}, bank {bank:.4}, softsign EMA of s {softsign:.4}, fixed \
             EMA of s {fixed:.4}"
        );
        eprintln!("{report}");
        assert!((bank - truth).abs() < 0.01, "{report}");
    }
}
