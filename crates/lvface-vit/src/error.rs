//! Errors of lvface-vit.

use std::path::PathBuf;

/// What can go wrong when configuring a [`Vit`](crate::Vit) or moving its weights.
#[derive(Debug, thiserror::Error)]
pub enum VitError {
    /// A configuration field breaks its rule.
    #[error("vit.{field} {rule}, got {value}")]
    InvalidConfig {
        /// The field name, as written in TOML.
        field: &'static str,
        /// The rule it breaks.
        rule: String,
        /// The offending value.
        value: String,
    },
    /// The backend cannot compute in `vit.compute_dtype` on this device.
    #[error(
        "vit.compute_dtype = \"{dtype}\" is not supported by the {backend} backend on this \
         device; use \"f32\" (or the other half type, if the device has it)"
    )]
    UnsupportedComputeDType {
        /// The TOML spelling of the type.
        dtype: &'static str,
        /// burn's name for the backend.
        backend: String,
    },
    /// No preset has this name.
    #[error("unknown ViT preset `{0}`; known: vit_t, vit_t_dp005_mask0, vit_s, vit_s_dp005_mask_0, vit_b, vit_b_dp005_mask_005, vit_l_dp005_mask_005, vit_h")]
    UnknownPreset(String),
    /// The weights file does not match the model: every problem is listed.
    #[error("weights {path} do not match the model:\n{problems}")]
    WeightsMismatch {
        /// The file read.
        path: PathBuf,
        /// Missing, unexpected and wrongly shaped keys, one per line.
        problems: String,
    },
    /// The file could not be read as a state dict at all.
    #[error("cannot read {path} as a state dict: {reason}")]
    UnreadableWeights {
        /// The file read.
        path: PathBuf,
        /// What the reader reported.
        reason: String,
    },
    /// The file has an extension this crate does not read or write.
    #[error("{path}: unsupported weights format (expected .safetensors, .pt or .pth)")]
    UnsupportedFormat {
        /// The file named.
        path: PathBuf,
    },
    /// Writing the weights failed.
    #[error("cannot write weights to {path}: {reason}")]
    Write {
        /// The destination.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Result with a [`VitError`].
pub type Result<T> = std::result::Result<T, VitError>;
