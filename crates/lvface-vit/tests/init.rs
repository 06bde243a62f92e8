//! Initialisation as insightface's `_init_weights`, and the feature head's BatchNorm statistics as
//! PyTorch keeps them, against the formulas written out by hand.

mod common;

use burn::backend::Autodiff;
use burn::nn::{BatchNormConfig, LayerNorm, Linear};
use burn::prelude::*;
use common::B;
use lvface_vit::{Vit, VitConfig};

fn values<Bk: Backend, const D: usize>(t: Tensor<Bk, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec().unwrap()
}

/// A model small enough to check whole, with a head Linear of 16 tokens · 32 = 512 inputs.
fn small() -> VitConfig {
    VitConfig {
        image_size: 32,
        patch_size: 8,
        embed_dim: 32,
        depth: 2,
        num_heads: 4,
        num_features: 64,
        drop_path_rate: 0.0,
        mask_ratio: 0.0,
        ..VitConfig::vit_t()
    }
}

fn std_dev(v: &[f64]) -> f64 {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

fn linears(vit: &Vit<B>) -> Vec<(String, &Linear<B>)> {
    let mut all = vec![
        ("feature.0".to_string(), &vit.feature.fc0),
        ("feature.2".to_string(), &vit.feature.fc2),
    ];
    for (i, block) in vit.blocks.iter().enumerate() {
        all.push((format!("blocks.{i}.attn.qkv"), &block.attn.qkv));
        all.push((format!("blocks.{i}.attn.proj"), &block.attn.proj));
        all.push((format!("blocks.{i}.mlp.fc1"), &block.mlp.fc1));
        all.push((format!("blocks.{i}.mlp.fc2"), &block.mlp.fc2));
    }
    all
}

#[test]
fn parameters_start_as_insightface_initialises_them() {
    let vit = small().init::<B>(&Default::default());
    let mut weights = Vec::new();
    for (name, linear) in linears(&vit) {
        let w = values(linear.weight.val());
        // Each weight alone: normal with std .02 (the largest has 16384 entries, the smallest
        // 3072, so the sample std is within 3% of .02 with room to spare).
        let std = std_dev(&w);
        assert!((std - 0.02).abs() < 0.02 * 0.1, "{name}.weight: std {std}");
        weights.extend(w);
        if let Some(bias) = &linear.bias {
            assert!(
                values(bias.val()).iter().all(|&b| b == 0.0),
                "{name}.bias is not zero"
            );
        }
    }
    let std = std_dev(&weights);
    assert!((std - 0.02).abs() < 0.0004, "all Linear weights: std {std}");
    // qkv and the head's Linears have no bias; proj, fc1 and fc2 have one, all zero.
    assert!(vit.blocks[0].attn.qkv.bias.is_none() && vit.feature.fc0.bias.is_none());
    assert!(vit.blocks[0].mlp.fc1.bias.is_some());

    let mut norms: Vec<&LayerNorm<B>> = vec![&vit.norm];
    for block in &vit.blocks {
        norms.extend([&block.norm1, &block.norm2]);
    }
    for norm in norms {
        assert!(values(norm.gamma.val()).iter().all(|&g| g == 1.0));
        let beta = norm.beta.as_ref().expect("LayerNorm with bias");
        assert!(values(beta.val()).iter().all(|&b| b == 0.0));
    }
    for bn in [&vit.feature.bn1, &vit.feature.bn3] {
        assert!(values(bn.gamma.val()).iter().all(|&g| g == 1.0));
        assert!(values(bn.beta.val()).iter().all(|&b| b == 0.0));
        assert!(values(bn.running_mean.value()).iter().all(|&m| m == 0.0));
        assert!(values(bn.running_var.value()).iter().all(|&v| v == 1.0));
    }
    let pos = std_dev(&values(vit.pos_embed.val()));
    assert!((pos - 0.02).abs() < 0.002, "pos_embed: std {pos}");

    // The patch convolution keeps PyTorch's Conv2d default: weight and bias uniform in
    // ±1/√fan_in, fan_in = 3·8·8 = 192 (insightface's `_init_weights` skips Conv2d).
    let bound = 1.0 / 192f64.sqrt();
    let conv = &vit.patch_embed.proj;
    let w = values(conv.weight.val());
    let b = values(conv.bias.as_ref().unwrap().val());
    for v in w.iter().chain(&b) {
        assert!(v.abs() <= bound, "{v} outside ±{bound}");
    }
    // A uniform draw on ±a has std a/√3.
    let std = std_dev(&w);
    assert!((std - bound / 3f64.sqrt()).abs() < 0.05 * bound, "{std}");
    assert!(b.iter().any(|&v| v != 0.0));
}

type T = Autodiff<B>;

/// `[batch, tokens, dim]` inputs of the head, varied per sample and feature.
fn tokens(batch: usize, seed: f32) -> Tensor<T, 3> {
    let n = (batch * 16 * 32) as i64;
    Tensor::<T, 1, Int>::arange(0..n, &Default::default())
        .float()
        .mul_scalar(seed)
        .sin()
        .reshape([batch, 16, 32])
}

/// Per column of a `[rows, columns]` row-major matrix: the mean and PyTorch's unbiased variance.
fn column_stats(x: &[f64], columns: usize) -> (Vec<f64>, Vec<f64>) {
    let rows = x.len() / columns;
    let mean: Vec<f64> = (0..columns)
        .map(|j| (0..rows).map(|i| x[i * columns + j]).sum::<f64>() / rows as f64)
        .collect();
    let var = (0..columns)
        .map(|j| {
            (0..rows)
                .map(|i| (x[i * columns + j] - mean[j]).powi(2))
                .sum::<f64>()
                / (rows - 1) as f64
        })
        .collect();
    (mean, var)
}

/// `x·W` of burn's row layout (`W` is `[in, out]`).
fn matmul(x: &[f64], w: &[f64], inputs: usize, outputs: usize) -> Vec<f64> {
    let rows = x.len() / inputs;
    let mut y = vec![0.0; rows * outputs];
    for i in 0..rows {
        for k in 0..inputs {
            for j in 0..outputs {
                y[i * outputs + j] += x[i * inputs + k] * w[k * outputs + j];
            }
        }
    }
    y
}

/// Within `tol` relative to the larger of |want| and 1; f32 against f64 by hand.
fn close_to(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}: {g} vs {w}"
        );
    }
}

fn close(what: &str, got: &[f64], want: &[f64]) {
    close_to(what, got, want, 1e-5);
}

#[test]
fn head_batch_norms_keep_pytorchs_unbiased_running_variance() {
    const BATCH: usize = 5;
    let head = small().init::<T>(&Default::default()).feature;
    let w0 = values(head.fc0.weight.val());
    let w2 = values(head.fc2.weight.val());
    // PyTorch's BatchNorm1d in training, by hand: the batch is normalised by the biased variance,
    // and `running ← 0.9·running + 0.1·batch statistic` with the unbiased variance
    // (`torch.nn.functional.batch_norm`, momentum 0.1).
    let (mut mean1, mut var1) = (vec![0.0; 32], vec![1.0; 32]);
    let (mut mean3, mut var3) = (vec![0.0; 64], vec![1.0; 64]);
    let fold = |running: &mut Vec<f64>, batch: &[f64]| {
        for (r, b) in running.iter_mut().zip(batch) {
            *r = 0.9 * *r + 0.1 * b;
        }
    };
    let normalise = |x: &[f64], mean: &[f64], unbiased: &[f64]| -> Vec<f64> {
        let columns = mean.len();
        x.iter()
            .enumerate()
            .map(|(k, v)| {
                let j = k % columns;
                let biased = unbiased[j] * (BATCH - 1) as f64 / BATCH as f64;
                (v - mean[j]) / (biased + 2e-5).sqrt()
            })
            .collect()
    };
    for seed in [0.37f32, 1.91] {
        let input = tokens(BATCH, seed);
        let output = values(head.forward(input.clone()));
        let x = values(input.reshape([BATCH, 512]));
        let h = matmul(&x, &w0, 512, 32);
        let (m, v) = column_stats(&h, 32);
        let h = normalise(&h, &m, &v);
        fold(&mut mean1, &m);
        fold(&mut var1, &v);
        let z = matmul(&h, &w2, 32, 64);
        let (m, v) = column_stats(&z, 64);
        // Normalising by the spread of 5 samples magnifies f32's rounding of the matmuls.
        close_to("output", &output, &normalise(&z, &m, &v), 1e-4);
        fold(&mut mean3, &m);
        fold(&mut var3, &v);
    }
    close(
        "bn1 mean",
        &values(head.bn1.running_mean.value_sync()),
        &mean1,
    );
    close("bn1 var", &values(head.bn1.running_var.value_sync()), &var1);
    close(
        "bn3 mean",
        &values(head.bn3.running_mean.value_sync()),
        &mean3,
    );
    close("bn3 var", &values(head.bn3.running_var.value_sync()), &var3);

    // burn's own BatchNorm folds the biased variance: on the same batch its running variance
    // moves by (N - 1)/N of PyTorch's step, which is what the head corrects.
    let bn = BatchNormConfig::new(3).init::<T>(&Default::default());
    let x = Tensor::<T, 2>::from_floats(
        [
            [1.0, 0.0, 2.0],
            [3.0, 1.0, 2.0],
            [2.0, 5.0, 8.0],
            [6.0, 2.0, 0.0],
        ],
        &Default::default(),
    );
    let _ = bn.forward(x.clone());
    let burn_step: Vec<f64> = values(bn.running_var.value_sync())
        .iter()
        .map(|v| (v - 0.9) / 0.1)
        .collect();
    let (_, unbiased) = column_stats(&values(x), 3);
    let biased: Vec<f64> = unbiased.iter().map(|v| v * 3.0 / 4.0).collect();
    close("burn's BatchNorm", &burn_step, &biased);
}

#[test]
fn a_batch_of_one_leaves_the_running_variance() {
    let head = small().init::<T>(&Default::default()).feature;
    let _ = head.forward(tokens(1, 0.37));
    assert!(values(head.bn1.running_var.value_sync())
        .iter()
        .all(|&v| v == 1.0));
    // The mean still moves: one sample is a sample of it.
    assert!(values(head.bn1.running_mean.value_sync())
        .iter()
        .any(|&m| m != 0.0));
}
