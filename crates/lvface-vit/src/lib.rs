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
//!
//! ```ignore
//! use lvface_vit::VitConfig;
//! let config = VitConfig::vit_t();
//! let model = config.init::<Flex>(&device).load_weights("vit_t.safetensors")?;
//! let embeddings = model.forward(images); // [batch, 512]
//! ```

mod attention;
mod block;
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
pub use config::VitConfig;
pub use error::{Result, VitError};
pub use feature_head::FeatureHead;
pub use mlp::Mlp;
pub use patch_embed::PatchEmbed;
pub use vit::Vit;
