//! Errors of lvface-eval.

use std::path::PathBuf;

/// What can go wrong when evaluating: inputs that do not fit together, sets too small or too
/// one-sided for a protocol, unreadable meta files, and report files that cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A configuration field breaks its rule.
    #[error("{field} {rule}, got {value}")]
    InvalidConfig {
        /// The key path, as written in TOML (`eval.verification.folds`).
        field: String,
        /// The rule it breaks.
        rule: String,
        /// The offending value.
        value: String,
    },
    /// Two inputs that must have matching sizes do not.
    #[error("{what}: expected {expected}, got {got}")]
    ShapeMismatch {
        /// Which inputs, e.g. "issame labels per embedding pair".
        what: String,
        /// The size implied by the other input.
        expected: usize,
        /// The size found.
        got: usize,
    },
    /// A value that must be finite is NaN or infinite.
    #[error("{what} at index {index} is not finite: {value}")]
    NotFinite {
        /// Which input.
        what: String,
        /// Position of the first offending value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Fewer pairs than folds: k-fold splitting is impossible.
    #[error("{pairs} pairs cannot be split into {folds} folds (at least {folds} needed)")]
    TooFewPairs {
        /// Number of pairs given.
        pairs: usize,
        /// Number of folds asked for.
        folds: usize,
    },
    /// A fold has no genuine or no impostor pair, so a rate on it divides by zero.
    #[error(
        "fold {fold} (pairs {start}..{end}) has {same} genuine and {diff} impostor pairs; \
         VAL and FAR need at least one of each in every fold"
    )]
    DegenerateFold {
        /// Fold index, from 0.
        fold: usize,
        /// First pair of the fold.
        start: usize,
        /// One past the last pair of the fold.
        end: usize,
        /// Genuine pairs in the fold.
        same: usize,
        /// Impostor pairs in the fold.
        diff: usize,
    },
    /// A ROC needs both classes.
    #[error(
        "a ROC needs genuine and impostor pairs, got {genuine} genuine and {impostors} impostor"
    )]
    OneClass {
        /// Number of genuine pairs.
        genuine: usize,
        /// Number of impostor pairs.
        impostors: usize,
    },
    /// The embedding model returned something unusable or failed.
    #[error("model on images {start}..{end}: {reason}")]
    Model {
        /// First image of the batch.
        start: usize,
        /// One past the last image of the batch.
        end: usize,
        /// What went wrong.
        reason: String,
    },
    /// A meta or image file could not be read or parsed.
    #[error("cannot read {path}{}: {reason}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Read {
        /// The file.
        path: PathBuf,
        /// The 1-based line, for text files.
        line: Option<usize>,
        /// What went wrong.
        reason: String,
    },
    /// A report or plot could not be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The destination.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl EvalError {
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

    pub(crate) fn shape(what: impl Into<String>, expected: usize, got: usize) -> Self {
        Self::ShapeMismatch {
            what: what.into(),
            expected,
            got,
        }
    }

    pub(crate) fn write(path: &std::path::Path, reason: impl ToString) -> Self {
        Self::Write {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// Result with an [`EvalError`].
pub type Result<T> = std::result::Result<T, EvalError>;

/// The first non-finite value of `values`, as an error naming `what`.
pub(crate) fn check_finite(what: &str, values: impl IntoIterator<Item = f64>) -> Result<()> {
    for (index, value) in values.into_iter().enumerate() {
        if !value.is_finite() {
            return Err(EvalError::NotFinite {
                what: what.to_string(),
                index,
                value,
            });
        }
    }
    Ok(())
}
