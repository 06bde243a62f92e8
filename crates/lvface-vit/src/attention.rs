//! [`Attention`]: multi-head self-attention with insightface's fused, bias-free `qkv`.

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

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
    /// The type of the `qkv` and `proj` products. `q·kᵀ`, the softmax and `weights·v` are f32
    /// whatever it is, as insightface computes them with autocast off: attention logits of
    /// 144 tokens lose too much in a half type's 8 or 11 significant bits.
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
            qkv: init::linear(dim, 3 * dim, false, device),
            proj: init::linear(dim, dim, true, device),
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

        // softmax(q·kᵀ · head_dim^-0.5)·v, insightface's scale. burn's attention is the same
        // composition of ops under autodiff; without autodiff a backend may run a fused kernel
        // (Flex: one pass per head, no score tensors allocated per op; CUDA: flash attention).
        // The default scale is `1/sqrt(head_dim)`; CUDA's fused kernel is taken only with it.
        let out = attention(q, k, v, None, None, AttentionModuleOptions::default())
            .swap_dims(1, 2)
            .reshape([batch, tokens, dim]);
        dtype.linear(&self.proj, out)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::module::Param;
    use burn::tensor::activation::softmax;
    use burn::tensor::FloatDType;

    use super::*;

    type B = Flex;

    const DIM: usize = 8;
    const HEADS: usize = 2;
    const TOKENS: usize = 5;

    /// Attention whose `qkv` copies its input three times and whose `proj` is the identity. With
    /// inputs of few significant bits `qkv` is exact in bf16, and `proj` in bf16 only rounds the
    /// attention's output to bf16: whatever else differs from f32 comes from the products.
    fn copying(compute_dtype: ComputeDType) -> Attention<B> {
        let device = Default::default();
        let mut attention = Attention::<B>::new(DIM, HEADS, compute_dtype, &device);
        let eye = Tensor::<B, 2>::eye(DIM, &device);
        attention.qkv.weight = Param::from_tensor(Tensor::cat(vec![eye.clone(); 3], 1));
        attention.proj.weight = Param::from_tensor(eye);
        attention
    }

    fn max_abs_diff(a: Tensor<B, 3>, b: Tensor<B, 3>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn attention_products_stay_f32_under_bf16() {
        // Multiples of 1/8 in [-1, 1): at most 4 significant bits, exact in bf16.
        let values: Vec<f32> = (0..TOKENS * DIM)
            .map(|i| ((i * 7 + 3) % 16) as f32 / 8.0 - 1.0)
            .collect();
        let x = Tensor::<B, 3>::from_data(
            TensorData::new(values, [1, TOKENS, DIM]),
            &Default::default(),
        );
        let rounded = |t: Tensor<B, 3>| t.cast(FloatDType::BF16).cast(FloatDType::F32);
        let want = rounded(copying(ComputeDType::F32).forward(x.clone()));
        let got = copying(ComputeDType::Bf16).forward(x.clone());
        let diff = max_abs_diff(got, want.clone());
        assert!(diff < 1e-6, "bf16 attention differs from f32 by {diff}");

        // The control: the same attention with its products in bf16 is visibly off, so the
        // comparison above can tell the two apart.
        let head_dim = DIM / HEADS;
        let split = |t: Tensor<B, 3>| {
            t.reshape([1, TOKENS, HEADS, head_dim])
                .swap_dims(1, 2)
                .cast(FloatDType::BF16)
        };
        let (q, k, v) = (split(x.clone()), split(x.clone()), split(x));
        let scale = (head_dim as f64).powf(-0.5);
        let logits = q
            .matmul(k.swap_dims(2, 3))
            .cast(FloatDType::F32)
            .mul_scalar(scale);
        let weights = softmax(logits, 3).cast(FloatDType::BF16);
        let half = weights
            .matmul(v)
            .cast(FloatDType::F32)
            .swap_dims(1, 2)
            .reshape([1, TOKENS, DIM]);
        let control = max_abs_diff(rounded(half), want);
        assert!(control > 1e-4, "bf16 products differ by only {control}");
    }
}
