//! Errors of lvface-pfc.

use std::path::PathBuf;

/// What can go wrong in a sharded step, a collective or a sharded checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum PfcError {
    /// A configuration field breaks its rule.
    #[error("{field} {rule}, got {value}")]
    InvalidConfig {
        /// The key path, as written in TOML.
        field: String,
        /// The rule it breaks.
        rule: String,
        /// The offending value.
        value: String,
    },
    /// Ranks disagree on something that must be equal everywhere (the batch size, a shape).
    #[error("rank {rank}: {what}")]
    Mismatch {
        /// The rank that noticed.
        rank: usize,
        /// What differs.
        what: String,
    },
    /// The softmax of a step is not finite: a NaN or infinity reached the logits, or every logit
    /// of a sample underflowed. Every rank sees the same reduced values, so every rank returns
    /// this error at the same step, and a caller may skip the step on all ranks alike.
    #[error("rank {rank}: the softmax denominator of sample {sample} is {value} (a NaN or infinity reached the logits, or every logit is below s - 87 and underflows in f32)")]
    NonFinite {
        /// The rank that noticed (every rank does).
        rank: usize,
        /// The sample of the gathered batch.
        sample: usize,
        /// Its denominator.
        value: f32,
    },
    /// A collective operation failed: burn-collective refused it, or the TCP ring between
    /// processes broke or found the ranks out of step.
    #[error("collective operation `{op}` failed on rank {rank}: {reason}")]
    Collective {
        /// The operation.
        op: &'static str,
        /// The caller's rank.
        rank: usize,
        /// The transport's error.
        reason: String,
    },
    /// A rank of a group of processes is gone: its process stopped or was killed, or its node
    /// cannot be reached. Every rank left reports the same `lost` rank.
    #[error("rank {lost} of the group is gone, so the collective operation `{op}` failed on rank {rank}: {how}")]
    RankLost {
        /// The operation.
        op: &'static str,
        /// The caller's rank.
        rank: usize,
        /// The rank that is gone.
        lost: usize,
        /// Who saw it, and how.
        how: String,
    },
    /// The launch environment (RANK, WORLD_SIZE, ...) is missing or inconsistent.
    #[error("launch environment: {0}")]
    Launch(String),
    /// A sharded checkpoint could not be read or does not fit.
    #[error("cannot read sharded checkpoint {path}: {reason}")]
    CheckpointRead {
        /// The file read.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A sharded checkpoint could not be written.
    #[error("cannot write sharded checkpoint {path}: {reason}")]
    CheckpointWrite {
        /// The destination.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl PfcError {
    pub(crate) fn invalid(
        field: impl Into<String>,
        rule: impl Into<String>,
        value: impl ToString,
    ) -> Self {
        PfcError::InvalidConfig {
            field: field.into(),
            rule: rule.into(),
            value: value.to_string(),
        }
    }
}

/// Results of lvface-pfc.
pub type Result<T> = std::result::Result<T, PfcError>;
