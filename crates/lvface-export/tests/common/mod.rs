//! Shared helpers of the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

use burn::backend::Flex;
use burn::prelude::*;
use burn_store::{ModuleStore, SafetensorsStore};
use lvface_vit::VitConfig;

pub type B = Flex;

/// The ViT parity fixture (PyTorch reference weights and outputs), kept in lvface-vit.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../lvface-vit/tests/fixtures/vit-parity")
        .join(name)
}

/// `vit_micro` of the fixture: width 64, depth 2, 8 heads, 512-d output.
pub fn micro_config() -> VitConfig {
    VitConfig::vit_micro()
}

/// Reads one tensor of a fixture safetensors file.
pub fn read_tensor<const D: usize>(file: &str, name: &str) -> Tensor<B, D> {
    let mut store = SafetensorsStore::from_file(fixture(file));
    let snapshot = store
        .get_snapshot(name)
        .unwrap()
        .unwrap_or_else(|| panic!("no {name}"));
    Tensor::from_data(snapshot.to_data().unwrap(), &Default::default())
}

/// A scratch folder unique to one test.
pub fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lvface-export-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Values of a tensor, row-major.
pub fn values<const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().to_vec().unwrap()
}
