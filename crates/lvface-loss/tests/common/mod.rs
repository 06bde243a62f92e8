//! Shared helpers of the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{ModuleStore, SafetensorsStore};

/// Flex stores and computes f64 when the tensors are created as F64 (its element type is chosen
/// per tensor at run time), so gradient checks run in double precision.
pub type B = Autodiff<Flex>;

/// The fixture folder copied from the PyTorch reference (see its README).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/margin-loss")
        .join(name)
}

/// One tensor of `cases.safetensors`, as f64 values and its shape.
pub fn read(name: &str) -> (Vec<f64>, Vec<usize>) {
    let mut store = SafetensorsStore::from_file(fixture("cases.safetensors"));
    let snapshot = store
        .get_snapshot(name)
        .unwrap()
        .unwrap_or_else(|| panic!("no {name}"));
    let data = snapshot.to_data().unwrap();
    let shape = data.shape.to_vec();
    (data.convert::<f64>().to_vec().unwrap(), shape)
}

/// The labels of the fixture (stored as I64).
pub fn read_labels() -> Vec<i64> {
    let mut store = SafetensorsStore::from_file(fixture("cases.safetensors"));
    let snapshot = store.get_snapshot("labels").unwrap().expect("labels");
    snapshot
        .to_data()
        .unwrap()
        .convert::<i64>()
        .to_vec()
        .unwrap()
}

/// A float tensor of the given precision.
pub fn tensor<const D: usize>(values: &[f64], shape: [usize; D], dtype: DType) -> Tensor<B, D> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), shape),
        (&Default::default(), dtype),
    )
}

/// An int tensor.
pub fn labels(values: &[i64]) -> Tensor<B, 1, Int> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len()]),
        &Default::default(),
    )
}

/// The values of a tensor as f64.
pub fn values<const D: usize, Bk: Backend>(t: Tensor<Bk, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec().unwrap()
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// Largest `|a - b| / max(|b|, floor)` over two equally long slices.
pub fn max_rel_err(a: &[f64], b: &[f64], floor: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(floor))
        .fold(0.0, f64::max)
}

/// Central finite differences of `f` at `x`: `(f(x + h e_i) - f(x - h e_i)) / 2h` per entry.
pub fn finite_differences(x: &[f64], h: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let v = x[i];
            x[i] = v + h;
            let plus = f(&x);
            x[i] = v - h;
            let minus = f(&x);
            x[i] = v;
            (plus - minus) / (2.0 * h)
        })
        .collect()
}
