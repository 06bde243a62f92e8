//! The face-recognition Vision Transformer of insightface and LVFace, in burn.
//!
//! [`Vit`] is insightface's `backbones/vit.py` layer for layer: patch embedding, learned position
//! embedding, no class token, pre-norm blocks (fused bias-free `qkv`, ReLU6 MLP), final
//! LayerNorm, and a feature head over all tokens giving an un-normalised 512-d embedding.
//! Its field names are insightface's state-dict keys, so insightface and LVFace checkpoints
//! (`.pt` or `.safetensors`) load and save without conversion.
//!
//! Invariants:
//! - The crate is generic over the burn backend and does no IO but reading and writing weights.
//! - Training behaviour (token masking, stochastic depth, BatchNorm statistics) is on exactly
//!   when the backend is an autodiff backend; `model.valid()` gives the deterministic model.
//! - Parameters are f32 whatever [`VitConfig::compute_dtype`] says. With `bf16` or `f16` the
//!   matrix products and the patch convolution run in that type, as under PyTorch's autocast;
//!   LayerNorm, softmax, BatchNorm, residual adds, biases and the output stay f32, and so do
//!   the gradients of every parameter ([`ComputeDType`]). With `f32` nothing is cast.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::prelude::*;
//! use lvface_vit::VitConfig;
//!
//! let device = Default::default();
//! let config = VitConfig::vit_t();
//! let path = std::env::temp_dir().join(format!("lvface-vit-doc-{}.safetensors", std::process::id()));
//! config.init::<Flex>(&device).save_weights(&path)?; // insightface's key names
//! let model = config.init::<Flex>(&device).load_weights(&path)?;
//!
//! let images = Tensor::<Flex, 4>::zeros([2, 3, 112, 112], &device); // RGB in [-1, 1]
//! let embeddings = model.forward(images);
//! assert_eq!(embeddings.dims(), [2, 512]);
//! # std::fs::remove_file(&path).unwrap();
//! # Ok::<(), lvface_vit::VitError>(())
//! ```

mod attention;
mod block;
mod compute_dtype;
mod config;
mod error;
mod feature_head;
mod init;
pub mod masking;
mod mlp;
mod patch_embed;
mod vit;
mod weights;

pub use attention::Attention;
pub use block::Block;
pub use compute_dtype::ComputeDType;
pub use config::VitConfig;
pub use error::{Result, VitError};
pub use feature_head::FeatureHead;
pub use mlp::Mlp;
pub use patch_embed::PatchEmbed;
pub use vit::Vit;
