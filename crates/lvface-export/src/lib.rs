//! Deployment of lvface's face ViT: ONNX export, insightface's MFR submission rules, and
//! import of insightface / LVFace PyTorch backbones.
//!
//! - [`export_onnx`] writes a [`Vit`](lvface_vit::Vit) as an ONNX graph (opset 17 by default)
//!   with one input `data` `[N, 3, 112, 112]` (RGB, `(pixel - 127.5) / 127.5`, symbolic batch)
//!   and one output `embedding` `[N, 512]`, fp32 initializers only. burn 0.21 has no ONNX
//!   exporter; the graph is written op by op with prost messages of ONNX's schema ([`proto`]).
//! - [`check_mfr`] applies the structural rules of insightface's MFR checker to model bytes.
//! - [`infer_config`] names the ViT a state dict belongs to from its tensor shapes, and
//!   [`import_weights`] turns a `.pt` backbone into lvface's `.safetensors` weights file.
//!
//! Invariants:
//! - The exported graph is the evaluation graph: no masking, no stochastic depth, BatchNorm
//!   with running statistics. It computes what `model.valid().forward` computes (the tests run
//!   it with tract-onnx and compare within 1e-4).
//! - Initializers carry insightface's state-dict names (`<key>_t` where a weight is stored
//!   transposed for `MatMul`), so a graph reads like the checkpoint it came from.
//! - The only IO is reading weights files (import); export returns bytes.
//!
//! ```
//! use burn::backend::Flex;
//! use lvface_export::{check_mfr, export_onnx, ExportOptions, MfrLimits};
//! use lvface_vit::VitConfig;
//!
//! let config = VitConfig::vit_t();
//! let vit = config.init::<Flex>(&Default::default());
//! let bytes = export_onnx(&vit, &config, &ExportOptions::default())?;
//! let report = check_mfr(&bytes, &MfrLimits::CFAT)?;
//! println!("{report:?}");
//! # Ok::<(), lvface_export::ExportError>(())
//! ```

mod check;
mod error;
mod export;
mod graph;
mod import;
pub mod proto;

pub use check::{check_mfr, MfrLimits, MfrReport};
pub use error::{ExportError, Result};
pub use export::{
    export_onnx, onnx_model, ExportOptions, BATCH_SYMBOL, DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME,
};
pub use import::{import_weights, infer_config, InferredConfig, DEFAULT_HEADS};
