//! `configs/smoke.toml` trained with the backbone's products in bf16 (`vit.compute_dtype`):
//! mixed precision learns as f32 does, step for step within the bound `docs/training.md` states.

#![allow(clippy::print_stderr)] // The measured differences are printed for the record.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use lvface_train::{create_run, train, Experiment, RunSummary, TrainConfig};

type B = Autodiff<Flex>;

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-train-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

fn smoke_run(name: &str, sets: &[&str]) -> (PathBuf, RunSummary) {
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let config = TrainConfig::load(&Experiment::File(smoke), &sets).unwrap();
    let dir = fresh_dir(name);
    create_run(&config, &dir).unwrap();
    let summary = train::<B>(&dir, &Default::default()).unwrap();
    (dir, summary)
}

/// Bounds `docs/training.md` states for the smoke run in bf16 against f32, as relative loss
/// differences: the first step, where both start from the same weights, and every step, where
/// the runs' different updates compound. Measured 0.035% and 1.6% on an AMD EPYC without
/// AVX-512, 0.035% and 2.14% on one with it: the GEMM kernels Flex picks differ by CPU, and the
/// roundings that compound over 24 steps with them, so the run's bound leaves room for that.
const BF16_FIRST_STEP_BOUND: f64 = 0.001;
const BF16_RUN_BOUND: f64 = 0.04;

#[test]
fn smoke_run_learns_with_bf16_products() {
    let (dir, summary) = smoke_run("precision-bf16", &["vit.compute_dtype=bf16"]);

    // The resolved configuration a resume reads keeps the setting.
    let resolved = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(resolved.contains("compute_dtype = \"bf16\""), "{resolved}");

    // The smoke test's criterion: finite losses, and the early phase's fall by a fifth.
    assert!(summary.finished);
    assert_eq!(summary.steps, 24);
    let losses: Vec<f64> = summary.losses.iter().map(|l| l.1).collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let mean = |range: std::ops::Range<usize>| losses[range].iter().sum::<f64>() / 4.0;
    assert!(
        mean(8..12) < 0.8 * mean(0..4),
        "early-phase loss did not fall: {losses:?}"
    );

    // Step for step against the same run in f32.
    let (_, reference) = smoke_run("precision-f32", &[]);
    let differences: Vec<f64> = summary
        .losses
        .iter()
        .zip(&reference.losses)
        .map(|(half, full)| {
            assert_eq!(half.0, full.0);
            (half.1 - full.1).abs() / full.1.abs()
        })
        .collect();
    let worst = differences.iter().copied().fold(0.0f64, f64::max);
    eprintln!(
        "bf16 against f32: relative loss difference {:.5} at step 1, at most {worst:.5}",
        differences[0]
    );
    assert!(
        differences[0] <= BF16_FIRST_STEP_BOUND,
        "bf16's first loss differs from f32's by {}",
        differences[0]
    );
    assert!(
        worst <= BF16_RUN_BOUND,
        "bf16 losses differ from f32 by up to {worst}: {:?} against {:?}",
        summary.losses,
        reference.losses
    );
}
