//! [`Attention`]: multi-head self-attention with insightface's fused, bias-free `qkv`.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::compute_dtype::ComputeDType;
use crate::init;

/// Multi-head self-attention. The `qkv` output features are laid out `[3][heads][head_dim]`,
/// which is what makes insightface's fused weight load unchanged.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Linear(D -> 3D) without bias.
    pub qkv: Linear<B>,
    /// Linear(D -> D) with bias.
    pub proj: Linear<B>,
    /// Number of heads.
    pub num_heads: usize,
    /// The type of the projections and of both attention products; the softmax is f32.
    pub compute_dtype: ComputeDType,
}

impl<B: Backend> Attention<B> {
    pub(crate) fn new(
        dim: usize,
        num_heads: usize,
        compute_dtype: ComputeDType,
        device: &B::Device,
    ) -> Self {
        Self {
            qkv: init::linear(dim, 3 * dim, false).init(device),
            proj: init::linear(dim, dim, true).init(device),
            num_heads,
            compute_dtype,
        }
    }

    /// # Shapes
    /// - x: `[batch, tokens, dim]`
    /// - output: `[batch, tokens, dim]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, tokens, dim] = x.dims();
        let head_dim = dim / self.num_heads;
        // [batch, tokens, 3, heads, head_dim] -> [3, batch, heads, tokens, head_dim]
        let dtype = self.compute_dtype;
        let qkv = dtype
            .linear(&self.qkv, x)
            .reshape([batch, tokens, 3, self.num_heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let [q, k, v]: [Tensor<B, 4>; 3] = qkv
            .chunk(3, 0)
            .into_iter()
            .map(|t| t.reshape([batch, self.num_heads, tokens, head_dim]))
            .collect::<Vec<_>>()
            .try_into()
            .expect("chunk(3) of a dimension of size 3 should give three tensors");

        let scale = (head_dim as f64).powf(-0.5);
        let weights = softmax(dtype.matmul(q, k.swap_dims(2, 3)).mul_scalar(scale), 3);
        let out = dtype
            .matmul(weights, v)
            .swap_dims(1, 2)
            .reshape([batch, tokens, dim]);
        dtype.linear(&self.proj, out)
    }
}
