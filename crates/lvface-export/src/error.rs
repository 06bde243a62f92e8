//! Errors of lvface-export.

use std::path::PathBuf;

/// What can go wrong exporting, checking or importing a backbone.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The configuration is invalid, or weights do not fit it.
    #[error(transparent)]
    Vit(#[from] lvface_vit::VitError),
    /// The model's tensors do not have the shapes of the configuration given with it.
    #[error("the model does not match its configuration: {0}")]
    ModelMismatch(String),
    /// The opset is outside the range the graph is written for.
    #[error("opset {0} is not supported: the graph needs opset 17 (LayerNormalization) to 21")]
    UnsupportedOpset(i64),
    /// Bytes that do not parse as an ONNX model.
    #[error("not an ONNX model: {0}")]
    NotOnnx(String),
    /// The model breaks rules of insightface's MFR checker; one rule per line.
    #[error("the model breaks MFR rules:\n{0}")]
    MfrRules(String),
    /// A state dict whose shapes are not those of an insightface ViT.
    #[error("{path}: cannot infer a ViT configuration: {reason}")]
    Infer {
        /// The weights file.
        path: PathBuf,
        /// What is missing or inconsistent.
        reason: String,
    },
    /// A weights file that cannot be read at all.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the reader reported.
        reason: String,
    },
}

/// Result with an [`ExportError`].
pub type Result<T> = std::result::Result<T, ExportError>;
