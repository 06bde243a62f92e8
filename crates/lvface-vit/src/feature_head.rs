//! [`FeatureHead`]: all tokens to one embedding.

use burn::nn::{BatchNorm, BatchNormConfig, Linear};
use burn::prelude::*;

use crate::compute_dtype::ComputeDType;
use crate::init;

/// insightface's `feature` `nn.Sequential`: Linear(N·D -> D, no bias), BatchNorm1d(D),
/// Linear(D -> F, no bias), BatchNorm1d(F), both BatchNorms with eps 2e-5. Field names keep the
/// Sequential's indices (`feature.0` is `fc0`, ...); `weights.rs` maps one to the other.
#[derive(Module, Debug)]
pub struct FeatureHead<B: Backend> {
    /// `feature.0`.
    pub fc0: Linear<B>,
    /// `feature.1`.
    pub bn1: BatchNorm<B>,
    /// `feature.2`.
    pub fc2: Linear<B>,
    /// `feature.3`.
    pub bn3: BatchNorm<B>,
    /// The type of both products; the BatchNorms are f32.
    pub compute_dtype: ComputeDType,
}

impl<B: Backend> FeatureHead<B> {
    pub(crate) fn new(
        tokens: usize,
        dim: usize,
        features: usize,
        compute_dtype: ComputeDType,
        device: &B::Device,
    ) -> Self {
        Self {
            fc0: init::linear(tokens * dim, dim, false).init(device),
            bn1: BatchNormConfig::new(dim).with_epsilon(2e-5).init(device),
            fc2: init::linear(dim, features, false).init(device),
            bn3: BatchNormConfig::new(features)
                .with_epsilon(2e-5)
                .init(device),
            compute_dtype,
        }
    }

    /// # Shapes
    /// - tokens: `[batch, tokens, dim]`
    /// - output: `[batch, features]`, not L2-normalised
    pub fn forward(&self, tokens: Tensor<B, 3>) -> Tensor<B, 2> {
        let dtype = self.compute_dtype;
        let x = dtype.linear(&self.fc0, tokens.flatten::<2>(1, 2));
        let x = self.bn1.forward(x);
        self.bn3.forward(dtype.linear(&self.fc2, x))
    }
}
