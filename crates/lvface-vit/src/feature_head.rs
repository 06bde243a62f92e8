//! [`FeatureHead`]: all tokens to one embedding.

use burn::nn::{BatchNorm, BatchNormConfig, Linear};
use burn::prelude::*;

use crate::compute_dtype::ComputeDType;
use crate::init;

/// insightface's `feature` `nn.Sequential`: Linear(N·D -> D, no bias), BatchNorm1d(D),
/// Linear(D -> F, no bias), BatchNorm1d(F), both BatchNorms with eps 2e-5. Field names keep the
/// Sequential's indices (`feature.0` is `fc0`, ...); `weights.rs` maps one to the other.
///
/// **NOTE:** in training the BatchNorms keep PyTorch's running variance, not burn's (see
/// `batch_norm` below), so exported statistics are those insightface would have.
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
            fc0: init::linear(tokens * dim, dim, false, device),
            bn1: BatchNormConfig::new(dim).with_epsilon(2e-5).init(device),
            fc2: init::linear(dim, features, false, device),
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
        let x = batch_norm(&self.bn1, x);
        batch_norm(&self.bn3, dtype.linear(&self.fc2, x))
    }
}

/// BatchNorm1d as PyTorch computes it. burn's training forward folds the biased batch variance
/// (`Σ(x - x̄)²/N`) into the running variance; PyTorch folds the unbiased one (`/(N - 1)`),
/// so after training burn's statistics would be `(N - 1)/N` of insightface's and an exported
/// model would normalise by too small a variance. This is burn's forward with that one
/// difference: the batch is normalised by the biased variance, as in both. A batch of one says
/// nothing about the variance (PyTorch refuses it in training), so it leaves the running
/// variance as it is. Evaluation is burn's own forward.
///
/// # Shapes
/// - x: `[batch, channels]`
/// - output: `[batch, channels]`
fn batch_norm<B: Backend>(bn: &BatchNorm<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    if !B::ad_enabled(&x.device()) {
        return bn.forward(x);
    }
    let [batch, channels] = x.dims();
    let device = x.device();
    // The same operations in the same order as burn's, so the output is bit for bit burn's.
    let over_batch = |t: Tensor<B, 2>| {
        t.swap_dims(0, 1)
            .reshape([channels, batch])
            .mean_dim(1)
            .reshape([1, channels])
    };
    let mean = over_batch(x.clone());
    let var = over_batch(x.clone().sub(mean.clone()).square());

    let momentum = bn.momentum;
    let running_mean = bn.running_mean.value_sync().to_device(&device);
    let running_mean = running_mean.mul_scalar(1.0 - momentum).add(
        mean.clone()
            .detach()
            .mul_scalar(momentum)
            .reshape([channels]),
    );
    bn.running_mean.update(running_mean.detach());
    if batch > 1 {
        let unbiased = var
            .clone()
            .detach()
            .mul_scalar(batch as f64 / (batch - 1) as f64);
        let running_var = bn.running_var.value_sync().to_device(&device);
        let running_var = running_var
            .mul_scalar(1.0 - momentum)
            .add(unbiased.mul_scalar(momentum).reshape([channels]));
        bn.running_var.update(running_var.detach());
    }

    let std = var.add_scalar(bn.epsilon).sqrt();
    x.sub(mean)
        .div(std)
        .mul(bn.gamma.val().reshape([1, channels]))
        .add(bn.beta.val().reshape([1, channels]))
}
