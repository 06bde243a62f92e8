//! [`VitConfig`]: the shape of an insightface face ViT, with the presets insightface names.

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::compute_dtype::ComputeDType;
use crate::error::{Result, VitError};

/// Configuration of a face-recognition [`Vit`](crate::Vit), field for field the arguments of
/// insightface's `VisionTransformer` (`recognition/arcface_torch/backbones/vit.py`).
///
/// Read from TOML by the training binary: unknown keys are rejected so that a typo in an override
/// file is an error instead of a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VitConfig {
    /// Side of the square input image in pixels.
    pub image_size: usize,
    /// Side of a square patch; `image_size / patch_size` patches per side (the remainder is dropped).
    pub patch_size: usize,
    /// Token width `D`.
    pub embed_dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads; must divide `embed_dim`.
    pub num_heads: usize,
    /// Hidden width of the MLP as a multiple of `embed_dim`.
    pub mlp_ratio: usize,
    /// Width of the output embedding.
    pub num_features: usize,
    /// Largest stochastic-depth rate; block `i` uses `drop_path_rate * i / (depth - 1)`.
    pub drop_path_rate: f64,
    /// Fraction of tokens dropped during training (MAE-style masking), in `[0, 1)`.
    pub mask_ratio: f64,
    /// Reproduce insightface's masking quirk: its `forward_features` never passes `mask_ratio`, so
    /// any positive ratio masks 10% of the tokens. Checkpoints trained by insightface saw that.
    pub insightface_mask_quirk: bool,
    /// Trade compute for memory in training. burn 0.21 checkpoints the whole autodiff graph, not
    /// single blocks: a training binary honours this switch by choosing
    /// `Autodiff<B, BalancedCheckpointing>` as its backend.
    pub grad_checkpoint: bool,
    /// The type of the backbone's matrix products and patch convolution: `f32` (the default),
    /// or `bf16` / `f16` for mixed precision as PyTorch's AMP, with parameters, LayerNorm,
    /// softmax, BatchNorm and the output kept f32 (see [`ComputeDType`]). The half types are
    /// meant for GPUs: on the CPU backend they run but are slower than f32. Not an insightface
    /// argument (its `fp16` switch is `torch.autocast`, this setting's model); absent from
    /// older resolved configurations, which therefore read as f32.
    #[serde(default)]
    pub compute_dtype: ComputeDType,
}

impl Default for VitConfig {
    fn default() -> Self {
        Self::vit_t()
    }
}

impl VitConfig {
    /// The insightface layout every preset shares: 112x112 input, patch 9, 8 heads, MLP ratio 4,
    /// 512-d embedding.
    fn insightface(embed_dim: usize, depth: usize, drop_path_rate: f64, mask_ratio: f64) -> Self {
        Self {
            image_size: 112,
            patch_size: 9,
            embed_dim,
            depth,
            num_heads: 8,
            mlp_ratio: 4,
            num_features: 512,
            drop_path_rate,
            mask_ratio,
            insightface_mask_quirk: false,
            grad_checkpoint: false,
            compute_dtype: ComputeDType::F32,
        }
    }

    /// `vit_t`: width 256, depth 12 (19.14 M parameters).
    pub fn vit_t() -> Self {
        Self::insightface(256, 12, 0.1, 0.1)
    }

    /// `vit_micro`: width 64, depth 2, 8 heads, no drop path or masking, the 512-d head. Not a
    /// preset of insightface's: the model of the vit-parity fixture (`vit_micro` of
    /// `benches/reference/vit_torch.py`), small enough for tests and parity checks.
    pub fn vit_micro() -> Self {
        Self::insightface(64, 2, 0.0, 0.0)
    }

    /// `vit_t_dp005_mask0`, insightface's WebFace42M variant of `vit_t`.
    pub fn vit_t_dp005_mask0() -> Self {
        Self::insightface(256, 12, 0.05, 0.0)
    }

    /// `vit_s`: width 512, depth 12 (76.02 M parameters).
    pub fn vit_s() -> Self {
        Self::insightface(512, 12, 0.1, 0.1)
    }

    /// `vit_s_dp005_mask_0`, insightface's WebFace42M variant of `vit_s`.
    pub fn vit_s_dp005_mask_0() -> Self {
        Self::insightface(512, 12, 0.05, 0.0)
    }

    /// `vit_b`: width 512, depth 24 (113.83 M parameters). Not the 768/12 ViT-B of image
    /// classification.
    pub fn vit_b() -> Self {
        Self {
            grad_checkpoint: true,
            ..Self::insightface(512, 24, 0.1, 0.1)
        }
    }

    /// `vit_b_dp005_mask_005`, insightface's WebFace42M variant of `vit_b`.
    pub fn vit_b_dp005_mask_005() -> Self {
        Self {
            grad_checkpoint: true,
            ..Self::insightface(512, 24, 0.05, 0.05)
        }
    }

    /// `vit_l_dp005_mask_005`: width 768, depth 24 (255.68 M parameters), LVFace's ViT-L.
    pub fn vit_l_dp005_mask_005() -> Self {
        Self {
            grad_checkpoint: true,
            ..Self::insightface(768, 24, 0.05, 0.05)
        }
    }

    /// `vit_h`: width 1024, depth 48 (756.39 M parameters).
    pub fn vit_h() -> Self {
        Self {
            grad_checkpoint: true,
            ..Self::insightface(1024, 48, 0.1, 0.0)
        }
    }

    /// Names accepted by [`VitConfig::preset`].
    pub const PRESETS: [&'static str; 8] = [
        "vit_t",
        "vit_t_dp005_mask0",
        "vit_s",
        "vit_s_dp005_mask_0",
        "vit_b",
        "vit_b_dp005_mask_005",
        "vit_l_dp005_mask_005",
        "vit_h",
    ];

    /// The preset insightface's `get_model` calls `name`.
    pub fn preset(name: &str) -> Result<Self> {
        Ok(match name {
            "vit_t" => Self::vit_t(),
            "vit_t_dp005_mask0" => Self::vit_t_dp005_mask0(),
            "vit_s" => Self::vit_s(),
            "vit_s_dp005_mask_0" => Self::vit_s_dp005_mask_0(),
            "vit_b" => Self::vit_b(),
            "vit_b_dp005_mask_005" => Self::vit_b_dp005_mask_005(),
            "vit_l_dp005_mask_005" => Self::vit_l_dp005_mask_005(),
            "vit_h" => Self::vit_h(),
            _ => return Err(VitError::UnknownPreset(name.to_string())),
        })
    }

    /// Patches per image side.
    pub fn grid_size(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens per image: `grid_size²` (144 for 112 px and patch 9).
    pub fn num_patches(&self) -> usize {
        self.grid_size() * self.grid_size()
    }

    /// The mask ratio training really applies, after the optional insightface quirk.
    pub fn effective_mask_ratio(&self) -> f64 {
        if self.insightface_mask_quirk && self.mask_ratio > 0.0 {
            0.1
        } else {
            self.mask_ratio
        }
    }

    /// Tokens that go through the blocks in training: `int(N * (1 - r))`, as insightface.
    pub fn kept_tokens(&self) -> usize {
        (self.num_patches() as f64 * (1.0 - self.effective_mask_ratio())) as usize
    }

    /// Checks that `device` can run this configuration: its `compute_dtype`, which only the
    /// device can answer for ([`validate`](Self::validate) checks the rest).
    pub fn check_device<B: Backend>(&self, device: &B::Device) -> Result<()> {
        if self.compute_dtype.supported_on::<B>(device) {
            Ok(())
        } else {
            Err(VitError::UnsupportedComputeDType {
                dtype: self.compute_dtype.name(),
                backend: B::name(device),
            })
        }
    }

    /// Checks every field once; the error names the field and the value.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, rule: &str, value: String| {
            Err(VitError::InvalidConfig {
                field,
                rule: rule.to_string(),
                value,
            })
        };
        if self.patch_size == 0 || self.image_size < self.patch_size {
            return invalid(
                "patch_size",
                &format!("must be in 1..={} (image_size)", self.image_size),
                self.patch_size.to_string(),
            );
        }
        for (field, value) in [
            ("embed_dim", self.embed_dim),
            ("depth", self.depth),
            ("num_heads", self.num_heads),
            ("mlp_ratio", self.mlp_ratio),
            ("num_features", self.num_features),
        ] {
            if value == 0 {
                return invalid(field, "must be positive", value.to_string());
            }
        }
        if self.embed_dim % self.num_heads != 0 {
            return invalid(
                "num_heads",
                &format!("must divide embed_dim = {}", self.embed_dim),
                self.num_heads.to_string(),
            );
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return invalid(
                "drop_path_rate",
                "must be in [0, 1)",
                self.drop_path_rate.to_string(),
            );
        }
        if !(0.0..1.0).contains(&self.mask_ratio) {
            return invalid(
                "mask_ratio",
                "must be in [0, 1)",
                self.mask_ratio.to_string(),
            );
        }
        if self.kept_tokens() == 0 {
            return invalid(
                "mask_ratio",
                &format!("must keep at least one of {} tokens", self.num_patches()),
                self.mask_ratio.to_string(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_named_by_insightface() {
        for name in VitConfig::PRESETS {
            let config = VitConfig::preset(name).unwrap();
            config.validate().unwrap();
            assert_eq!(config.num_patches(), 144, "{name}");
        }
        assert!(matches!(
            VitConfig::preset("vit_x"),
            Err(VitError::UnknownPreset(_))
        ));
    }

    #[test]
    fn mask_quirk_masks_ten_percent() {
        let mut config = VitConfig::vit_l_dp005_mask_005();
        assert_eq!(config.kept_tokens(), 136); // int(144 * 0.95)
        config.insightface_mask_quirk = true;
        assert_eq!(config.kept_tokens(), 129); // int(144 * 0.9)
        config.mask_ratio = 0.0;
        assert_eq!(config.kept_tokens(), 144);
    }

    #[test]
    fn validation_names_field_and_value() {
        let config = VitConfig {
            num_heads: 7,
            ..VitConfig::vit_t()
        };
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("num_heads") && message.contains('7'),
            "{message}"
        );

        let config = VitConfig {
            mask_ratio: 1.5,
            ..VitConfig::vit_t()
        };
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("mask_ratio") && message.contains("1.5"),
            "{message}"
        );

        let config = VitConfig {
            patch_size: 200,
            ..VitConfig::vit_t()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("patch_size"));

        let config = VitConfig {
            drop_path_rate: -0.1,
            ..VitConfig::vit_t()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("drop_path_rate"));

        let config = VitConfig {
            depth: 0,
            ..VitConfig::vit_t()
        };
        assert!(config.validate().unwrap_err().to_string().contains("depth"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        // The training binary reads this table with serde; a typo must be an error.
        use serde::de::value::{Error, MapDeserializer};
        let entries = vec![("embed_dim", 64usize), ("dept", 2usize)];
        let err = VitConfig::deserialize(MapDeserializer::<_, Error>::new(entries.into_iter()))
            .unwrap_err();
        assert!(err.to_string().contains("dept"), "{err}");
    }
}
