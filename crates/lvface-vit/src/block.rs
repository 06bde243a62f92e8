//! [`Block`]: a pre-norm transformer block with stochastic depth.

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use crate::attention::Attention;
use crate::compute_dtype::ComputeDType;
use crate::mlp::Mlp;

/// `x + DropPath(attn(norm1(x)))`, then `x + DropPath(mlp(norm2(x)))`.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    /// LayerNorm before attention (eps 1e-5).
    pub norm1: LayerNorm<B>,
    /// Multi-head self-attention.
    pub attn: Attention<B>,
    /// LayerNorm before the MLP (eps 1e-5).
    pub norm2: LayerNorm<B>,
    /// Feed-forward network.
    pub mlp: Mlp<B>,
    /// Probability of skipping each residual branch for a whole sample in training.
    pub drop_path: f64,
}

impl<B: Backend> Block<B> {
    pub(crate) fn new(
        dim: usize,
        num_heads: usize,
        mlp_hidden: usize,
        drop_path: f64,
        compute_dtype: ComputeDType,
        device: &B::Device,
    ) -> Self {
        Self {
            norm1: LayerNormConfig::new(dim).with_epsilon(1e-5).init(device),
            attn: Attention::new(dim, num_heads, compute_dtype, device),
            norm2: LayerNormConfig::new(dim).with_epsilon(1e-5).init(device),
            mlp: Mlp::new(dim, mlp_hidden, compute_dtype, device),
            drop_path,
        }
    }

    /// Training mode is burn's: an autodiff backend trains, its inner backend evaluates.
    ///
    /// # Shapes
    /// - x: `[batch, tokens, dim]`
    /// - output: `[batch, tokens, dim]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.drop_path(self.attn.forward(self.norm1.forward(x)));
        x.clone() + self.drop_path(self.mlp.forward(self.norm2.forward(x)))
    }

    /// Stochastic depth (timm's `drop_path`): each sample's branch is zeroed with probability
    /// `p` and the survivors are scaled by `1 / (1 - p)` so the expectation is unchanged.
    fn drop_path(&self, branch: Tensor<B, 3>) -> Tensor<B, 3> {
        let device = branch.device();
        if self.drop_path == 0.0 || !B::ad_enabled(&device) {
            return branch;
        }
        let keep = 1.0 - self.drop_path;
        let [batch, _, _] = branch.dims();
        let mask = Tensor::<B, 3>::random([batch, 1, 1], Distribution::Bernoulli(keep), &device);
        branch * mask.div_scalar(keep)
    }
}
