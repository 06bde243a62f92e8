//! [`PatchEmbed`]: non-overlapping patches to tokens.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;

/// Cuts the image into `patch x patch` squares with one strided convolution (insightface
/// `PatchEmbed`). Pixels past the last whole patch are ignored: 112 px with patch 9 uses 108.
#[derive(Module, Debug)]
pub struct PatchEmbed<B: Backend> {
    /// Conv2d(3 -> D, kernel = stride = patch) with bias; insightface key `patch_embed.proj`.
    pub proj: Conv2d<B>,
}

impl<B: Backend> PatchEmbed<B> {
    /// PyTorch's default Conv2d initialisation, which insightface keeps for this layer.
    pub(crate) fn new(patch_size: usize, embed_dim: usize, device: &B::Device) -> Self {
        let proj = Conv2dConfig::new([3, embed_dim], [patch_size, patch_size])
            .with_stride([patch_size, patch_size])
            .init(device);
        Self { proj }
    }

    /// # Shapes
    /// - images: `[batch, 3, height, width]`
    /// - output: `[batch, tokens, dim]` with `tokens = (height / patch) * (width / patch)`
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        self.proj.forward(images).flatten::<3>(2, 3).swap_dims(1, 2)
    }
}
