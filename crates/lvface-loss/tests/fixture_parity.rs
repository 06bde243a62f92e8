//! The combined margin softmax against PyTorch autograd (float64 reference values; see
//! `tests/fixtures/margin-loss/README.md`), computed here in f32: relative error 1e-4.

mod common;

use burn::tensor::DType;
use common::*;
use lvface_loss::{CombinedMarginConfig, GradientMode};

const CASES: [(&str, f64, f64, f64); 3] = [
    ("arcface", 1.0, 0.5, 0.0),
    ("cosface", 1.0, 0.0, 0.4),
    ("combined", 1.0, 0.3, 0.2),
];

fn check(dtype: DType, tolerance: f64) {
    let (x, x_shape) = read("embeddings");
    let (w, w_shape) = read("centers");
    let y = read_labels();
    assert_eq!((x_shape, w_shape.clone()), (vec![6, 16], vec![11, 16]));
    for (name, m1, m2, m3) in CASES {
        for (mode, gradient) in [
            ("straight", GradientMode::Straight),
            ("exact", GradientMode::Exact),
        ] {
            let margin = CombinedMarginConfig::combined(m1, m2, m3)
                .with_gradient(gradient)
                .init();
            let embeddings = tensor(&x, [6, 16], dtype).require_grad();
            let centres = tensor(&w, [11, 16], dtype).require_grad();
            let loss = margin.forward(embeddings.clone(), centres.clone(), labels(&y));
            let grads = loss.backward();
            let case = format!("{name}.{mode}");
            let (loss_ref, _) = read(&format!("{case}.loss"));
            let (gx_ref, _) = read(&format!("{case}.grad_embeddings"));
            let (gw_ref, _) = read(&format!("{case}.grad_centers"));
            let got = values(loss.clone().inner());
            assert!(
                max_rel_err(&got, &loss_ref, 1e-12) < tolerance,
                "{case} loss {got:?} vs {loss_ref:?}"
            );
            // Gradient entries near zero are compared relative to the largest entry.
            let gx = values(embeddings.grad(&grads).unwrap());
            let gw = values(centres.grad(&grads).unwrap());
            let scale_x = gx_ref.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let scale_w = gw_ref.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let ex = max_rel_err(&gx, &gx_ref, scale_x * 1e-2);
            let ew = max_rel_err(&gw, &gw_ref, scale_w * 1e-2);
            assert!(
                ex < tolerance,
                "{case} grad_embeddings: relative error {ex}"
            );
            assert!(ew < tolerance, "{case} grad_centers: relative error {ew}");
        }
    }
}

#[test]
fn matches_pytorch_in_f32() {
    check(DType::F32, 1e-4);
}

#[test]
fn matches_pytorch_in_f64() {
    check(DType::F64, 1e-9);
}
