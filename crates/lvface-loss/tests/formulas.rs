//! CurricularFace, AdaFace and the stable-stage loss against the formulas, written as naive loops
//! over a small cosine matrix.

mod common;

use std::f64::consts::PI;

use burn::backend::Flex;
use burn::prelude::*;
use common::*;
use lvface_loss::{
    AdaFaceConfig, CombinedMarginConfig, CurricularFaceConfig, PrototypeBank, PrototypeBankConfig,
    StableStageConfig,
};

const COS: [[f64; 4]; 3] = [
    [0.3, 0.6, -0.2, 0.1],
    [-0.9, 0.2, 0.35, 0.0],
    [0.5, 0.5, 0.9, -0.4],
];
const LABELS: [i64; 3] = [0, 2, -1];

fn cos_tensor() -> Tensor<Flex, 2> {
    let flat: Vec<f64> = COS.iter().flatten().copied().collect();
    Tensor::from_data(
        TensorData::new(flat, [3, 4]),
        (&Default::default(), burn::tensor::DType::F64),
    )
}

fn int(values: &[i64]) -> Tensor<Flex, 1, Int> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len()]),
        &Default::default(),
    )
}

fn close(got: &[f64], expected: &[f64]) {
    assert!(
        max_rel_err(got, expected, 1.0) < 1e-9,
        "{got:?}\n{expected:?}"
    );
}

#[test]
fn curricular_face_logits() {
    let (s, m, mu) = (64.0, 0.5, 0.01);
    let mut loss = CurricularFaceConfig {
        s,
        m,
        t_momentum: mu,
    }
    .init();
    loss.set_t(0.2);
    let got = values(loss.forward_logits(cos_tensor(), int(&LABELS)));
    // t is updated first, from the targets of the labelled rows: 0.3 and 0.35.
    let t = mu * (0.3 + 0.35) / 2.0 + (1.0 - mu) * 0.2;
    assert!((loss.t() - t).abs() < 1e-12);
    let mut expected = Vec::new();
    for (i, row) in COS.iter().enumerate() {
        let y = LABELS[i];
        let (threshold, target) = if y >= 0 {
            let c = row[y as usize];
            let cm = (c.acos() + m).cos();
            let target = if c > (PI - m).cos() {
                cm
            } else {
                c - m * (PI - m).sin()
            };
            (cm, target)
        } else {
            (f64::INFINITY, 0.0)
        };
        for (j, &c) in row.iter().enumerate() {
            let v = if j as i64 == y {
                target
            } else if c > threshold {
                c * (t + c)
            } else {
                c
            };
            expected.push(s * v);
        }
    }
    close(&got, &expected);
    // Row 1's target (0.35) margined is about -0.15: entries 0.2 and 0.0 are hard, -0.9 is not.
    assert!((got[5] - s * 0.2 * (t + 0.2)).abs() < 1e-9);
}

#[test]
fn ada_face_scaler_and_logits() {
    let (s, m, h) = (64.0, 0.4, 0.333);
    let mut ada = AdaFaceConfig {
        s,
        m,
        h,
        t_alpha: 0.5,
    }
    .init();
    let rows = [[3.0, 4.0], [0.0, 10.0], [0.5, 0.0]];
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    let embeddings = Tensor::<Flex, 2>::from_data(
        TensorData::new(flat, [3, 2]),
        (&Default::default(), burn::tensor::DType::F64),
    );
    let scaler = ada.margin_scaler(embeddings);
    let norms = [5.0f64, 10.0, 0.5];
    let mean = norms.iter().sum::<f64>() / 3.0;
    let std = (norms.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    let mu = 0.5 * mean + 0.5 * 20.0;
    let sigma = 0.5 * std + 0.5 * 100.0;
    let expected_scaler: Vec<f64> = norms
        .iter()
        .map(|v| (h * (v - mu) / (sigma + 1e-3)).clamp(-1.0, 1.0))
        .collect();
    close(&values(scaler.clone()), &expected_scaler);
    assert!((ada.norm_mean - mu).abs() < 1e-12 && (ada.norm_std - sigma).abs() < 1e-12);

    let got = values(ada.forward_logits(cos_tensor(), int(&LABELS), scaler));
    let eps = 1e-3;
    let mut expected = Vec::new();
    for (i, row) in COS.iter().enumerate() {
        for (j, &c) in row.iter().enumerate() {
            let c = c.clamp(-1.0 + eps, 1.0 - eps);
            let v = if j as i64 == LABELS[i] {
                let g = expected_scaler[i];
                (c.acos() - m * g).clamp(eps, PI - eps).cos() - (m + m * g)
            } else {
                c
            };
            expected.push(s * v);
        }
    }
    close(&got, &expected);
}

#[test]
fn stable_stage_is_eq_19_plus_prototype_cross_entropy() {
    let device = Default::default();
    let dtype = burn::tensor::DType::F64;
    // Embeddings and centres in 2-D so that every cosine is easy to write down.
    let angle = |a: f64| [a.cos(), a.sin()];
    let xs = [angle(0.1), angle(1.2)];
    let ws = [angle(0.0), angle(1.0), angle(2.5)];
    let ps = [angle(0.3), angle(1.4), angle(-1.0)];
    let lengths = [0.8, 0.4, 1.0];
    let labels = [0i64, 1];
    let t = |v: &[[f64; 2]]| {
        let flat: Vec<f64> = v.iter().flatten().copied().collect();
        Tensor::<Flex, 2>::from_data(TensorData::new(flat, [v.len(), 2]), (&device, dtype))
    };
    let bank = PrototypeBank::from_tensors(
        PrototypeBankConfig::default(),
        t(&ps),
        Tensor::from_data(TensorData::new(lengths.to_vec(), [3]), (&device, dtype)),
    );
    let margin = CombinedMarginConfig::combined(1.0, 0.3, 0.1);
    let lambda = 0.5;
    let loss = StableStageConfig {
        margin,
        prototype_weight: lambda,
        expectation_weighting: true,
    }
    .init()
    .forward(t(&xs), t(&ws), int(&labels), &bank);
    let dot = |a: [f64; 2], b: [f64; 2]| a[0] * b[0] + a[1] * b[1];
    let ce = |z: &[f64], y: usize| z.iter().map(|v| v.exp()).sum::<f64>().ln() - z[y];
    let (mut centre_loss, mut prototype_loss) = (0.0, 0.0);
    for (x, &y) in xs.iter().zip(&labels) {
        let y = y as usize;
        let z: Vec<f64> = (0..3)
            .map(|j| {
                let c = dot(*x, ws[j]);
                if j == y {
                    64.0 * lengths[y] * ((c.acos() + 0.3).cos() - 0.1)
                } else {
                    64.0 * c
                }
            })
            .collect();
        centre_loss += ce(&z, y) / 2.0;
        let z: Vec<f64> = (0..3)
            .map(|j| 64.0 * dot(*x, ps[j]) * if j == y { 1.0 - 0.7 } else { 1.0 })
            .collect();
        prototype_loss += ce(&z, y) / 2.0;
    }
    let expected = (centre_loss + lambda * prototype_loss) / (1.0 + lambda);
    close(&values(loss), &[expected]);
}
