//! Errors of lvface-loss.

use std::path::PathBuf;

/// What can go wrong when configuring a loss or moving a [`PrototypeBank`](crate::PrototypeBank)
/// to and from disk. The math itself is infallible: contract violations inside a step panic.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// A configuration field breaks its rule.
    #[error("{field} {rule}, got {value}")]
    InvalidConfig {
        /// The key path, as written in TOML (`curriculum.phases[1].margin.m2`).
        field: String,
        /// The rule it breaks.
        rule: String,
        /// The offending value.
        value: String,
    },
    /// A prototype bank file could not be read, or does not match the bank.
    #[error("cannot read prototype bank {path}: {reason}")]
    BankRead {
        /// The file read.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A prototype bank file could not be written.
    #[error("cannot write prototype bank to {path}: {reason}")]
    BankWrite {
        /// The destination.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl LossError {
    pub(crate) fn invalid(
        field: impl Into<String>,
        rule: impl Into<String>,
        value: impl ToString,
    ) -> Self {
        Self::InvalidConfig {
            field: field.into(),
            rule: rule.into(),
            value: value.to_string(),
        }
    }

    /// The same error with its key under `prefix` (`curricular_face.m` becomes
    /// `curriculum.phases[1].curricular_face.m`).
    pub(crate) fn under(self, prefix: &str) -> Self {
        match self {
            Self::InvalidConfig { field, rule, value } => Self::InvalidConfig {
                field: format!("{prefix}.{field}"),
                rule,
                value,
            },
            other => other,
        }
    }
}

/// Result with a [`LossError`].
pub type Result<T> = std::result::Result<T, LossError>;
