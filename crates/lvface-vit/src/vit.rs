//! [`Vit`]: the face-recognition Vision Transformer of insightface and LVFace.
//!
//! Mirrors `recognition/arcface_torch/backbones/vit.py` (insightface), which LVFace
//! (arXiv 2501.13420) trains unchanged. No class token: every token reaches the feature head.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use crate::block::Block;
use crate::config::VitConfig;
use crate::feature_head::FeatureHead;
use crate::init::TRUNC_NORMAL_02;
use crate::masking;
use crate::patch_embed::PatchEmbed;

/// The backbone. Field names are insightface's state-dict keys, so weights map by construction.
#[derive(Module, Debug)]
pub struct Vit<B: Backend> {
    /// Patches to tokens.
    pub patch_embed: PatchEmbed<B>,
    /// Learned position embedding, `[1, tokens, dim]`.
    pub pos_embed: Param<Tensor<B, 3>>,
    /// Filler for masked positions after the final norm, `[1, 1, dim]`; present even when
    /// masking is off, as in insightface's checkpoints.
    pub mask_token: Param<Tensor<B, 3>>,
    /// The transformer blocks.
    pub blocks: Vec<Block<B>>,
    /// Final LayerNorm (eps 1e-5).
    pub norm: LayerNorm<B>,
    /// Tokens to embedding.
    pub feature: FeatureHead<B>,
    /// Tokens kept by training-time masking.
    pub kept_tokens: usize,
}

impl VitConfig {
    /// Builds a freshly initialised backbone (insightface's initialisation).
    ///
    /// # Panics
    /// If the configuration is invalid; call [`VitConfig::validate`] first for an error instead.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Vit<B> {
        if let Err(err) = self.validate() {
            panic!("{err}");
        }
        let (dim, tokens) = (self.embed_dim, self.num_patches());
        let blocks = (0..self.depth)
            .map(|i| {
                // Stochastic-depth rates rise linearly: torch.linspace(0, rate, depth).
                let rate = if self.depth > 1 {
                    self.drop_path_rate * i as f64 / (self.depth - 1) as f64
                } else {
                    0.0
                };
                let hidden = dim * self.mlp_ratio;
                Block::new(
                    dim,
                    self.num_heads,
                    hidden,
                    rate,
                    self.compute_dtype,
                    device,
                )
            })
            .collect();
        Vit {
            patch_embed: PatchEmbed::new(self.patch_size, dim, self.compute_dtype, device),
            pos_embed: TRUNC_NORMAL_02.init([1, tokens, dim], device),
            mask_token: TRUNC_NORMAL_02.init([1, 1, dim], device),
            blocks,
            norm: LayerNormConfig::new(dim).with_epsilon(1e-5).init(device),
            feature: FeatureHead::new(tokens, dim, self.num_features, self.compute_dtype, device),
            kept_tokens: self.kept_tokens(),
        }
    }
}

impl<B: Backend> Vit<B> {
    /// Trainable parameters, counted as PyTorch's `parameters()` does (19.14 M for `vit_t`).
    /// burn's `num_params` also counts the BatchNorm running statistics, which PyTorch keeps as
    /// buffers.
    /// Counting reads shapes only, so a freshly built model is not materialised.
    pub fn num_trainable_params(&self) -> usize {
        let mut counter = LazyCounter(0);
        self.visit(&mut counter);
        let running = |bn: &burn::nn::BatchNorm<B>| 2 * bn.running_mean.value().dims()[0];
        counter.0 - running(&self.feature.bn1) - running(&self.feature.bn3)
    }

    /// Embeds a batch of face crops. In training (an autodiff backend) tokens are randomly
    /// masked and residual branches randomly dropped; in evaluation the output is deterministic.
    ///
    /// # Shapes
    /// - images: `[batch, 3, image_size, image_size]`, RGB, `(pixel / 255 - 0.5) / 0.5`
    /// - output: `[batch, num_features]`, not L2-normalised
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = self.patch_embed.forward(images) + self.pos_embed.val();
        let [batch, tokens, _] = x.dims();
        let device = x.device();

        let masking = B::ad_enabled(&device) && self.kept_tokens < tokens;
        let (mut x, ids_restore) = if masking {
            let noise = Tensor::random([batch, tokens], Distribution::Default, &device);
            let (kept, restore) = masking::mask(x, noise, self.kept_tokens);
            (kept, Some(restore))
        } else {
            (x, None)
        };
        for block in &self.blocks {
            x = block.forward(x);
        }
        let mut x = self.norm.forward(x);
        if let Some(restore) = ids_restore {
            x = masking::unmask(x, self.mask_token.val(), restore);
        }
        self.feature.forward(x)
    }
}

/// Counts float elements from shapes, without initialising lazy parameters.
struct LazyCounter(usize);

impl<B: Backend> burn::module::ModuleVisitor<B> for LazyCounter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0 += param.lazy_shape().num_elements();
    }
}
