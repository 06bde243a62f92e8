//! What a run writes for its user besides checkpoints: `metrics.jsonl` (one line per step),
//! `eval.jsonl` (one line per verified pair set), the verification table on stdout,
//! `report.json` at the end, and the curves as PNG/SVG (`crate::plots`).
// The verification table goes to stdout, next to the progress lines.
#![allow(clippy::print_stdout)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use burn::prelude::*;
use lvface_data::BinPairs;
use lvface_eval::VerificationReport;
use lvface_vit::Vit;

use crate::checkpoint::write_atomic;
use crate::config::TrainConfig;
pub(crate) use crate::plots::write_curves;
use crate::run_folder::{RunSummary, EVAL_FILE, METRICS_FILE};
use crate::verify;

/// Verification reports, per pair set.
pub(crate) type Reports = Vec<(String, VerificationReport)>;

/// `metrics.jsonl` for appending, without the lines of steps after `step` (an interrupted
/// session may have logged steps that the resumed run repeats); `eval.jsonl` is cut the same
/// way.
pub(crate) fn open_metrics(run_dir: &Path, step: u64) -> Result<File> {
    let path = run_dir.join(METRICS_FILE);
    keep_lines_up_to(&path, step)?;
    keep_lines_up_to(&run_dir.join(EVAL_FILE), step)?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Rewrites the JSON-lines file `path` (if it exists) without the lines whose `step` is after
/// `step`.
fn keep_lines_up_to(path: &Path, step: u64) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    write_atomic(path, &kept)
}

/// 10-fold verification of `backbone` on every pair set, and with `pixels` the raw-pixel floor
/// on the same pairs.
pub(crate) fn verify_sets<B: Backend>(
    backbone: &Vit<B>,
    sets: &[(String, BinPairs)],
    config: &TrainConfig,
    device: &B::Device,
    pixels: bool,
) -> Result<(Reports, Reports)> {
    let size = config.vit.image_size as u32;
    let protocol = &config.eval.verification;
    let (mut reports, mut floors) = (Vec::new(), Vec::new());
    for (name, pairs) in sets {
        let embeddings =
            verify::embed_pairs(backbone, pairs, size, config.eval.batch_size, device)?;
        let report = verify::verification(&embeddings, &pairs.issame, protocol)
            .with_context(|| format!("verifying on {name}"))?;
        reports.push((name.clone(), report));
        if pixels && config.eval.pixel_baseline {
            let floor = verify::pixel_baseline(pairs, size, protocol)?;
            floors.push((name.clone(), floor));
        }
    }
    Ok((reports, floors))
}

/// Appends one `eval.jsonl` line per set verified after `step`.
pub(crate) fn append_eval(run_dir: &Path, step: u64, epoch: u64, reports: &Reports) -> Result<()> {
    let path = run_dir.join(EVAL_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    for (name, report) in reports {
        writeln!(
            file,
            "{}",
            serde_json::json!({
                "step": step, "epoch": epoch, "set": name, "accuracy": report.accuracy,
                "accuracy_std": report.accuracy_std, "pairs": report.pairs,
            })
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The accuracies of the starting backbone of a fine-tuning run, per set: the `eval.jsonl`
/// lines of step 0 (no other verification happens before the first step).
pub(crate) fn start_accuracy(run_dir: &Path) -> Result<Vec<(String, f64)>> {
    let path = run_dir.join(EVAL_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["step"].as_u64() == Some(0))
        .filter_map(|v| Some((v["set"].as_str()?.to_string(), v["accuracy"].as_f64()?)))
        .collect())
}

/// The verification table: accuracy, its standard deviation over folds, the pixel floor, and
/// (a fine-tuning run's) the starting backbone's accuracy.
pub(crate) fn print_table(
    reports: &[(String, VerificationReport)],
    pixels: &[(String, VerificationReport)],
    start: &[(String, f64)],
) {
    let start_column = |text: &str| {
        if start.is_empty() {
            String::new()
        } else {
            format!(" {text:>15}")
        }
    };
    println!(
        "{:<18} {:>9} {:>9} {:>16}{}",
        "set",
        "accuracy",
        "std",
        "pixels accuracy",
        start_column("start accuracy")
    );
    for (name, report) in reports {
        let floor = pixel_accuracy(pixels, name);
        let before = start.iter().find(|(n, _)| n == name).map(|(_, a)| *a);
        println!(
            "{name:<18} {:>9.4} {:>9.4} {:>16}{}",
            report.accuracy,
            report.accuracy_std,
            floor.map_or("-".into(), |a| format!("{a:.4}")),
            start_column(&before.map_or("-".into(), |a| format!("{a:.4}")))
        );
    }
}

fn pixel_accuracy(pixels: &[(String, VerificationReport)], name: &str) -> Option<f64> {
    pixels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, r)| r.accuracy)
}

/// `RUN_DIR/report.json`: steps, final loss and, per pair set, the verification figures;
/// `skipped` steps (not finite) and `skipped_images` (corrupt images replaced on all ranks by
/// this invocation, once per epoch each).
pub(crate) fn write_report(
    run_dir: &Path,
    summary: &RunSummary,
    skipped: u64,
    skipped_images: usize,
) -> Result<()> {
    let sets: Vec<serde_json::Value> = summary
        .verification
        .iter()
        .map(|(name, report)| {
            serde_json::json!({
                "set": name, "pairs": report.pairs, "accuracy": report.accuracy,
                "accuracy_std": report.accuracy_std, "threshold": report.threshold,
                "val": report.val,
                "pixel_accuracy": pixel_accuracy(&summary.pixel_baseline, name),
                "start_accuracy": summary.start_accuracy.iter()
                    .find(|(n, _)| n == name).map(|(_, a)| *a),
            })
        })
        .collect();
    let report = serde_json::json!({
        "steps": summary.steps,
        "skipped_steps": skipped,
        "skipped_images": skipped_images,
        "final_loss": summary.losses.last().map(|l| l.1),
        "verification": sets,
    });
    write_atomic(
        &run_dir.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )
}
