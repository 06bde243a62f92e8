//! The names a run folder's files go by, the fresh folder a run gets without `--out`, and
//! what a run returns: the vocabulary the loop, the reports and the evaluation share, with
//! nothing to import of theirs.

use std::path::{Path, PathBuf};

use lvface_eval::VerificationReport;

/// The held-out synthetic pairs in a run's `data/` folder.
pub(crate) const SYNTHETIC_PAIRS: &str = "synthetic_pairs.bin";
/// The same pairs with a face mask on the second face.
pub(crate) const SYNTHETIC_MASKED_PAIRS: &str = "synthetic_masked_pairs.bin";

/// The resolved configuration inside a run folder.
pub const CONFIG_FILE: &str = "config.toml";
/// One JSON object per step.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// The per-verification file of a run folder: one JSON object per line,
/// `{"step": u64, "set": String, "accuracy": f64, ...}`.
pub const EVAL_FILE: &str = "eval.jsonl";

/// What a call to [`train`](crate::train) did.
#[derive(Debug)]
pub struct RunSummary {
    /// Steps done in all (this session and earlier ones).
    pub steps: u64,
    /// `(step, loss)` of the steps this session ran, `step` counting from 1.
    pub losses: Vec<(u64, f64)>,
    /// Whether the run reached its last step (and was verified).
    pub finished: bool,
    /// Whether it stopped early because a rank was asked to (SIGTERM, SIGINT), after writing a
    /// checkpoint.
    pub interrupted: bool,
    /// Verification of the trained backbone, per pair set.
    pub verification: Vec<(String, VerificationReport)>,
    /// Raw pixels on the same sets.
    pub pixel_baseline: Vec<(String, VerificationReport)>,
    /// Accuracy of the starting backbone on the same sets, per set, when the run started from
    /// `finetune.backbone` (verified before its first step).
    pub start_accuracy: Vec<(String, f64)>,
}

/// A fresh folder `runs/run-<unix seconds>[-n]` under `root`.
pub fn fresh_run_dir(root: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = root.join("runs").join(format!("run-{secs}"));
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        dir = PathBuf::from(format!("{}-{n}", base.display()));
        n += 1;
    }
    dir
}
