//! [`Mlp`]: the block's feed-forward network.

use burn::nn::Linear;
use burn::prelude::*;

use crate::compute_dtype::ComputeDType;
use crate::init;

/// fc1 -> ReLU6 -> fc2. insightface uses ReLU6 here, not the GELU of image-classification ViTs.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Linear(D -> hidden).
    pub fc1: Linear<B>,
    /// Linear(hidden -> D).
    pub fc2: Linear<B>,
    /// The type of both products.
    pub compute_dtype: ComputeDType,
}

impl<B: Backend> Mlp<B> {
    pub(crate) fn new(
        dim: usize,
        hidden: usize,
        compute_dtype: ComputeDType,
        device: &B::Device,
    ) -> Self {
        Self {
            fc1: init::linear(dim, hidden, true, device),
            fc2: init::linear(hidden, dim, true, device),
            compute_dtype,
        }
    }

    /// # Shapes
    /// - x: `[batch, tokens, dim]`
    /// - output: `[batch, tokens, dim]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dtype = self.compute_dtype;
        let hidden = dtype.linear(&self.fc1, x).clamp(0.0, 6.0);
        dtype.linear(&self.fc2, hidden)
    }
}
