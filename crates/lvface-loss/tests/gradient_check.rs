//! Every loss's autodiff gradient against central finite differences, in f64 (Flex computes in
//! f64 for F64 tensors). With h = 1e-6 the truncation error is O(h²·f''') ≈ 1e-12·s³ and the
//! rounding error O(ε·|f|/h) ≈ 1e-10·|f|, so agreement to 1e-5 relative (entries below 1e-3 of the
//! largest compared absolutely at that scale) is a strict test.
//!
//! Losses whose reference definition holds a quantity constant during the step (EPL's detached
//! margin, AdaFace's scaler, CurricularFace's `t`) are differentiated with that quantity frozen
//! at its value at the expansion point, which is what the gradient means.

mod common;

use burn::prelude::*;
use burn::tensor::DType;
use common::*;
use lvface_loss::{
    cosine_matrix, l2_normalize, softmax_cross_entropy, AdaFaceConfig, CombinedMarginConfig,
    CurricularFaceConfig, GradientMode, MarginGuard, PrototypeBank, PrototypeBankConfig,
    StableStageConfig,
};

const BATCH: usize = 4;
const DIM: usize = 5;
const CLASSES: usize = 7;
const LABELS: [i64; BATCH] = [3, 0, -1, 3];

fn inputs() -> (Vec<f64>, Vec<f64>) {
    (noise(BATCH * DIM, 1), noise(CLASSES * DIM, 2))
}

fn x_t(v: &[f64]) -> Tensor<B, 2> {
    tensor(v, [BATCH, DIM], DType::F64)
}

fn w_t(v: &[f64]) -> Tensor<B, 2> {
    tensor(v, [CLASSES, DIM], DType::F64)
}

fn scalar(t: Tensor<B, 1>) -> f64 {
    values(t)[0]
}

/// Autodiff gradients of `loss` at the fixture point against finite differences, for both the
/// embeddings and the centres.
fn check(name: &str, loss: impl Fn(Tensor<B, 2>, Tensor<B, 2>) -> Tensor<B, 1>) {
    let (x, w) = inputs();
    let xt = x_t(&x).require_grad();
    let wt = w_t(&w).require_grad();
    let grads = loss(xt.clone(), wt.clone()).backward();
    let gx = values(xt.grad(&grads).unwrap());
    let gw = values(wt.grad(&grads).unwrap());
    let fx = finite_differences(&x, 1e-6, |x| scalar(loss(x_t(x), w_t(&w))));
    let fw = finite_differences(&w, 1e-6, |w| scalar(loss(x_t(&x), w_t(w))));
    for (what, got, expected) in [("embeddings", gx, fx), ("centres", gw, fw)] {
        let largest = expected.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        assert!(
            largest > 1e-6,
            "{name}: the {what} gradient should not vanish"
        );
        let err = max_rel_err(&got, &expected, largest * 1e-3);
        assert!(
            err < 1e-5,
            "{name} {what}: relative error {err}\n{got:?}\n{expected:?}"
        );
    }
}

#[test]
fn cross_entropy() {
    check("cross entropy", |x, w| {
        softmax_cross_entropy(cosine_matrix(x, w).mul_scalar(64.0), labels(&LABELS))
    });
}

#[test]
fn combined_margins_exact() {
    let margins = [
        CombinedMarginConfig::arcface(0.5),
        CombinedMarginConfig::cosface(0.4),
        CombinedMarginConfig::combined(1.0, 0.3, 0.2),
        CombinedMarginConfig::combined(2.0, 0.1, 0.1).with_guard(MarginGuard::Continuous),
        CombinedMarginConfig::arcface(0.5).with_guard(MarginGuard::ArcFace),
    ];
    for config in margins {
        let margin = config.with_gradient(GradientMode::Exact).init();
        check(&format!("{config:?}"), |x, w| {
            margin.forward(x, w, labels(&LABELS))
        });
    }
}

/// A bank in f64 that has seen a few batches.
fn trained_bank(k: f64) -> PrototypeBank<B> {
    let config = PrototypeBankConfig {
        margin_k: k,
        ..Default::default()
    };
    let zeros = tensor(&vec![0.0; CLASSES * DIM], [CLASSES, DIM], DType::F64);
    let ones = tensor(&[1.0; CLASSES], [CLASSES], DType::F64);
    let mut bank = PrototypeBank::from_tensors(config, zeros, ones);
    for seed in 10..14 {
        let features = noise(6 * DIM, seed);
        bank.update(
            tensor(&features, [6, DIM], DType::F64),
            labels(&[0, 1, 2, 3, 3, 5]),
        );
    }
    bank
}

#[test]
fn stable_stage_exact() {
    let bank = trained_bank(0.0);
    let config = StableStageConfig {
        margin: CombinedMarginConfig::arcface(0.5).with_gradient(GradientMode::Exact),
        ..Default::default()
    };
    let loss = config.init();
    check("stable stage", |x, w| {
        loss.forward(x, w, labels(&LABELS), &bank)
    });
}

#[test]
fn prototype_logits_with_frozen_adaptive_margin() {
    let k = 0.7;
    let bank = trained_bank(k);
    let prototypes = l2_normalize(bank.prototypes());
    // EPL subtracts k·detach(c_y): at the expansion point x0 the margin is the constant k·c_y(x0).
    let (x0, _) = inputs();
    let c0 = values(cosine_matrix(x_t(&x0), prototypes.clone()));
    let mut frozen = vec![0.0; BATCH * CLASSES];
    for (i, &y) in LABELS.iter().enumerate() {
        if y >= 0 {
            frozen[i * CLASSES + y as usize] = k * c0[i * CLASSES + y as usize];
        }
    }
    let frozen = tensor(&frozen, [BATCH, CLASSES], DType::F64);
    let (x, _) = inputs();
    let xt = x_t(&x).require_grad();
    let logits = bank
        .forward_logits(xt.clone(), labels(&LABELS))
        .mul_scalar(64.0);
    let grads = softmax_cross_entropy(logits, labels(&LABELS)).backward();
    let got = values(xt.grad(&grads).unwrap());
    let expected = finite_differences(&x, 1e-6, |x| {
        let cos = cosine_matrix(x_t(x), prototypes.clone());
        scalar(softmax_cross_entropy(
            (cos - frozen.clone()).mul_scalar(64.0),
            labels(&LABELS),
        ))
    });
    let largest = expected.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let err = max_rel_err(&got, &expected, largest * 1e-3);
    assert!(largest > 1e-6 && err < 1e-5, "relative error {err}");
}

#[test]
fn curricular_face_with_fixed_t() {
    let config = CurricularFaceConfig {
        t_momentum: 0.0,
        ..Default::default()
    };
    let mut loss = config.init();
    loss.set_t(0.3);
    check("curricular face", |x, w| {
        loss.clone().forward(x, w, labels(&LABELS))
    });
}

#[test]
fn ada_face_with_frozen_scaler() {
    let mut ada = AdaFaceConfig {
        h: 2.0,
        ..Default::default()
    }
    .init();
    let (x0, _) = inputs();
    // Spread the norms so that scalers differ from row to row.
    let x0: Vec<f64> = x0
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1.0 + (i / DIM) as f64))
        .collect();
    let scaler = ada.margin_scaler(x_t(&x0));
    let s = values(scaler.clone());
    assert!(s.iter().any(|v| v.abs() > 0.05), "{s:?}");
    check("ada face", |x, w| {
        let cos = cosine_matrix(x, w);
        softmax_cross_entropy(
            ada.forward_logits(cos, labels(&LABELS), scaler.clone()),
            labels(&LABELS),
        )
    });
}
