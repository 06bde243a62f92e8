//! [`EvalReport`]: all figures of an evaluation as JSON, as Markdown tables, and as one
//! machine-readable `key=value` line per set.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::kfold::VerificationReport;
use crate::tar_far::TarFarReport;

/// The figures of one evaluated set: a `.bin` pair set has `verification` (and may have
/// `tar_far` from its pair scores), an IJB set has `tar_far` only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetReport {
    /// Name of the set (`lfw`, `cfp_fp`, `IJBC`…).
    pub name: String,
    /// The 10-fold protocol's figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationReport>,
    /// TAR at the target FARs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar_far: Option<TarFarReport>,
}

/// Every set of one evaluation run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalReport {
    /// What was evaluated (a run directory, a weights file, an embeddings file).
    #[serde(default)]
    pub source: String,
    /// The sets, in evaluation order.
    pub sets: Vec<SetReport>,
}

impl EvalReport {
    /// Pretty-printed JSON of every figure.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report should always serialise") + "\n"
    }

    /// Writes [`to_json`](Self::to_json) to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()).map_err(|e| EvalError::write(path, e))
    }

    /// Reads a report written by [`write_json`](Self::write_json).
    pub fn read_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::Read {
            path: path.to_path_buf(),
            line: None,
            reason: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| EvalError::Read {
            path: path.to_path_buf(),
            line: Some(e.line()),
            reason: e.to_string(),
        })
    }

    /// One machine-readable line per set: [`machine_line`] for sets with the 10-fold figures,
    /// then [`tar_line`] for sets with TAR@FAR.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![];
        for set in &self.sets {
            if let Some(v) = &set.verification {
                lines.push(machine_line(&set.name, v));
            }
            if let Some(t) = &set.tar_far {
                lines.push(tar_line(&set.name, t));
            }
        }
        lines
    }

    /// Markdown: a table of the 10-fold figures and a table of TAR@FAR (in %), each only if a
    /// set has such figures. A TAR at a FAR below `1 / impostors` is marked with `*`.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let verified: Vec<_> = self
            .sets
            .iter()
            .filter_map(|s| s.verification.as_ref().map(|v| (&s.name, v)))
            .collect();
        if !verified.is_empty() {
            let far = verified[0].1.val_far_target;
            md.push_str("| set | pairs | accuracy (%) | VAL@FAR=");
            md.push_str(&far_label(far));
            md.push_str(" (%) | FAR (%) | threshold (sq. L2) | threshold (cos) | XNorm |\n");
            md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
            for (name, v) in verified {
                let xnorm = v
                    .xnorm
                    .map_or_else(|| "–".to_string(), |x| format!("{x:.3}"));
                let _ = writeln!(
                    md,
                    "| {name} | {} | {:.2} ± {:.2} | {:.2} ± {:.2} | {:.3} | {:.3} | {:.3} | {xnorm} |",
                    v.pairs,
                    100.0 * v.accuracy,
                    100.0 * v.accuracy_std,
                    100.0 * v.val,
                    100.0 * v.val_std,
                    100.0 * v.far,
                    v.threshold,
                    v.threshold_cosine,
                );
            }
        }
        let tars: Vec<_> = self
            .sets
            .iter()
            .filter_map(|s| s.tar_far.as_ref().map(|t| (&s.name, t)))
            .collect();
        if !tars.is_empty() {
            if !md.is_empty() {
                md.push('\n');
            }
            let mut fars: Vec<f64> = vec![];
            for (_, t) in &tars {
                for p in &t.points {
                    if !fars.contains(&p.far) {
                        fars.push(p.far);
                    }
                }
            }
            fars.sort_by(f64::total_cmp);
            md.push_str("| set | genuine | impostors |");
            for far in &fars {
                let _ = write!(md, " TAR@FAR={} (%) |", far_label(*far));
            }
            md.push_str(" AUC (%) |\n|---|---:|---:|");
            md.push_str(&"---:|".repeat(fars.len() + 1));
            md.push('\n');
            let mut unresolved = false;
            for (name, t) in &tars {
                let _ = write!(md, "| {name} | {} | {} |", t.genuine, t.impostors);
                for far in &fars {
                    match t.at(*far) {
                        Some(p) => {
                            let mark = if p.resolved { "" } else { "*" };
                            unresolved |= !p.resolved;
                            let _ = write!(md, " {:.2}{mark} |", 100.0 * p.tar);
                        }
                        None => md.push_str(" – |"),
                    }
                }
                let _ = writeln!(md, " {:.2} |", 100.0 * t.auc);
            }
            md.push_str(
                "\nTAR is the TPR of the ROC point nearest to the FAR, as insightface's IJB \
                 scripts report it.\n",
            );
            if unresolved {
                md.push_str("\n\\* FAR below 1 / impostors: the data cannot resolve it.\n");
            }
        }
        md
    }

    /// Writes [`to_markdown`](Self::to_markdown) to `path`.
    pub fn write_markdown(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_markdown()).map_err(|e| EvalError::write(path, e))
    }
}

/// A FAR as the lines and tables write it: `1e-3`, `5e-4`, `0.2` → `2e-1`.
pub fn far_label(far: f64) -> String {
    format!("{far:e}")
}

/// A set name usable as a `key=value` value: whitespace and `=` become `_`.
fn token(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_whitespace() || c == '=' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The machine-readable line of a verification set, e.g.
/// `set=lfw accuracy=0.9876 std=0.0043 val@far1e-3=0.9512 threshold=1.234 pairs=6000`,
/// followed by `xnorm=…` when the report has it. `threshold` is the mean squared-L2 fold
/// threshold.
pub fn machine_line(name: &str, v: &VerificationReport) -> String {
    let mut line = format!(
        "set={} accuracy={:.4} std={:.4} val@far{}={:.4} threshold={:.3} pairs={}",
        token(name),
        v.accuracy,
        v.accuracy_std,
        far_label(v.val_far_target),
        v.val,
        v.threshold,
        v.pairs
    );
    if let Some(x) = v.xnorm {
        let _ = write!(line, " xnorm={x:.3}");
    }
    line
}

/// The machine-readable TAR@FAR line of a set, e.g.
/// `set=IJBC tar@far1e-6=0.8853 … tar@far1e-1=0.9950 impostors=15658489 pairs=15658489`;
/// a TAR whose FAR the data cannot resolve is still printed, and `min_far` says where that
/// starts.
pub fn tar_line(name: &str, t: &TarFarReport) -> String {
    let mut line = format!("set={}", token(name));
    for p in &t.points {
        let _ = write!(line, " tar@far{}={:.4}", far_label(p.far), p.tar);
    }
    let _ = write!(
        line,
        " auc={:.4} impostors={} min_far={:.3e} pairs={}",
        t.auc, t.impostors, t.min_far, t.pairs
    );
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar_far::tar_at_far;

    fn verification() -> VerificationReport {
        VerificationReport {
            pairs: 6000,
            genuine: 3000,
            impostors: 3000,
            fold_sizes: vec![600; 10],
            accuracy: 0.98762,
            accuracy_std: 0.00431,
            fold_accuracies: vec![0.98762; 10],
            fold_thresholds: vec![1.234; 10],
            threshold: 1.2341,
            threshold_cosine: 1.0 - 1.2341 / 2.0,
            val_far_target: 1e-3,
            val: 0.95124,
            val_std: 0.01,
            far: 0.0009,
            fold_vals: vec![0.95124; 10],
            fold_fars: vec![0.0009; 10],
            fold_val_thresholds: vec![0.9; 10],
            xnorm: None,
        }
    }

    #[test]
    fn line_format_is_the_documented_one() {
        let v = verification();
        assert_eq!(
            machine_line("lfw", &v),
            "set=lfw accuracy=0.9876 std=0.0043 val@far1e-3=0.9512 threshold=1.234 pairs=6000"
        );
        let v = VerificationReport {
            xnorm: Some(22.5),
            ..v
        };
        assert!(machine_line("my set", &v).starts_with("set=my_set accuracy="));
        assert!(machine_line("lfw", &v).ends_with(" pairs=6000 xnorm=22.500"));
        assert_eq!(far_label(1e-6), "1e-6");
        assert_eq!(far_label(0.1), "1e-1");
    }

    #[test]
    fn tar_line_and_markdown_mark_unresolved_fars() {
        let t = tar_at_far(
            &[0.9, 0.8, 0.1, 0.2],
            &[true, true, false, false],
            &[1e-3, 0.5],
        )
        .unwrap();
        assert_eq!(
            tar_line("IJBC", &t),
            "set=IJBC tar@far1e-3=1.0000 tar@far5e-1=1.0000 auc=1.0000 impostors=2 \
             min_far=5.000e-1 pairs=4"
        );
        let report = EvalReport {
            source: "test".into(),
            sets: vec![
                SetReport {
                    name: "lfw".into(),
                    verification: Some(verification()),
                    tar_far: None,
                },
                SetReport {
                    name: "IJBC".into(),
                    verification: None,
                    tar_far: Some(t),
                },
            ],
        };
        let md = report.to_markdown();
        assert!(
            md.contains("| lfw | 6000 | 98.76 ± 0.43 | 95.12 ± 1.00 | 0.090 | 1.234 | 0.383 | – |"),
            "{md}"
        );
        assert!(
            md.contains("| IJBC | 2 | 2 | 100.00* | 100.00 | 100.00 |"),
            "{md}"
        );
        assert!(md.contains("\\* FAR below 1 / impostors"));
        assert_eq!(report.lines().len(), 2);
        let back: EvalReport = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(back, report);
    }
}
