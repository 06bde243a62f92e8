//! Shared data and comparisons of the equivalence tests.
#![allow(dead_code)]

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;

pub type Inner = Flex;
pub type B = Autodiff<Flex>;

/// Values in [-1, 1) from a 64-bit LCG: the same data on every run and every rank.
pub fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn labels(seed: u64, len: usize, classes: usize) -> Vec<i64> {
    values(seed, len)
        .into_iter()
        .map(|v| (((v + 1.0) / 2.0 * classes as f32) as i64).min(classes as i64 - 1))
        .collect()
}

pub fn matrix<BB: Backend>(seed: u64, rows: usize, cols: usize) -> Tensor<BB, 2> {
    Tensor::from_data(
        TensorData::new(values(seed, rows * cols), [rows, cols]),
        &Default::default(),
    )
}

/// Rank `rank`'s `batch` rows of a row-major `[_, width]` matrix.
pub fn rank_rows<BB: Backend>(
    values: &[f32],
    rank: usize,
    batch: usize,
    width: usize,
) -> Tensor<BB, 2> {
    Tensor::from_data(
        TensorData::new(
            values[rank * batch * width..(rank + 1) * batch * width].to_vec(),
            [batch, width],
        ),
        &Default::default(),
    )
}

pub fn to_vec<BB: Backend, const D: usize>(t: Tensor<BB, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// `max |got - want| <= tol · max(|want|)`, with the worst element in the message.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let (i, err) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold(
            (0, 0f32),
            |acc, (i, e)| if e > acc.1 { (i, e) } else { acc },
        );
    assert!(
        err <= tol * scale,
        "{what}: element {i} differs by {err} (scale {scale}): got {} want {}",
        got[i],
        want[i]
    );
}
