//! [`PatchEmbed`]: non-overlapping patches to tokens.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;

use crate::compute_dtype::ComputeDType;

/// Cuts the image into `patch x patch` squares with one strided convolution (insightface
/// `PatchEmbed`). Pixels past the last whole patch are ignored: 112 px with patch 9 uses 108.
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    /// Conv2d(3 -> D, kernel = stride = patch) with bias; insightface key `patch_embed.proj`.
    pub proj: Conv2d<B>,
    /// The type of the convolution.
    pub compute_dtype: ComputeDType,
}

impl<B: Backend> PatchEmbed<B> {
    /// PyTorch's default Conv2d initialisation, which insightface keeps for this layer.
    pub(crate) fn new(
        patch_size: usize,
        embed_dim: usize,
        compute_dtype: ComputeDType,
        device: &B::Device,
    ) -> Self {
        let proj = Conv2dConfig::new([3, embed_dim], [patch_size, patch_size])
            .with_stride([patch_size, patch_size])
            .init(device);
        Self {
            proj,
            compute_dtype,
        }
    }

    /// # Shapes
    /// - images: `[batch, 3, height, width]`
    /// - output: `[batch, tokens, dim]` with `tokens = (height / patch) * (width / patch)`
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        self.compute_dtype
            .conv2d(&self.proj, images)
            .flatten::<3>(2, 3)
            .swap_dims(1, 2)
    }
}
