//! `vit.grad_checkpoint`: a run trained on the checkpointing autodiff backend follows the plain
//! one step for step. Only what backward keeps and what it recomputes differs, so the losses and
//! gradient norms agree to rounding.

use std::any::TypeId;
use std::path::{Path, PathBuf};

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::{Autodiff, Flex};
use lvface_train::{create_run, train, with_autodiff, Experiment, TrainConfig, METRICS_FILE};

/// Largest relative difference allowed between the two runs' losses and gradient norms. Both
/// compute the same ops on the same inputs in the same order, which on CPU repeats the same
/// bits; the bound leaves room for nothing but rounding.
const TOLERANCE: f64 = 1e-6;

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-train-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

/// `configs/smoke.toml` with two blocks (so that one block's backward recomputes from another's
/// output), trained as the binary trains it: on the backend [`with_autodiff!`] chooses. Returns
/// that backend and `(loss, grad_norm)` per step.
fn smoke_run(grad_checkpoint: bool) -> (TypeId, Vec<(f64, f64)>) {
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    let sets = [
        "vit.depth=2".to_string(),
        format!("vit.grad_checkpoint={grad_checkpoint}"),
    ];
    let config = TrainConfig::load(&Experiment::File(smoke), &sets).unwrap();
    let dir = fresh_dir(&format!("checkpointing-{grad_checkpoint}"));
    create_run(&config, &dir).unwrap();
    let (backend, summary) = with_autodiff!(Flex, config.vit.grad_checkpoint, |B| (
        TypeId::of::<B>(),
        train::<B>(&dir, &Default::default()).unwrap()
    ));
    assert!(summary.finished);
    let steps = std::fs::read_to_string(dir.join(METRICS_FILE))
        .unwrap()
        .lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                line["loss"].as_f64().unwrap(),
                line["grad_norm"].as_f64().unwrap(),
            )
        })
        .collect();
    (backend, steps)
}

#[test]
fn checkpointed_training_matches_plain_training() {
    let (plain_backend, plain) = smoke_run(false);
    let (checkpointed_backend, checkpointed) = smoke_run(true);
    assert_eq!(plain_backend, TypeId::of::<Autodiff<Flex>>());
    assert_eq!(
        checkpointed_backend,
        TypeId::of::<Autodiff<Flex, BalancedCheckpointing>>()
    );

    // Both phases: 12 early steps (Partial FC sampling), 12 stable ones (prototypes).
    assert_eq!(plain.len(), 24);
    assert_eq!(checkpointed.len(), plain.len());
    let relative = |a: f64, b: f64| (a - b).abs() / a.abs().max(b.abs()).max(f64::MIN_POSITIVE);
    for (step, (p, c)) in plain.iter().zip(&checkpointed).enumerate() {
        assert!(
            p.0.is_finite() && p.1.is_finite(),
            "step {}: {p:?}",
            step + 1
        );
        assert!(
            relative(p.0, c.0) <= TOLERANCE && relative(p.1, c.1) <= TOLERANCE,
            "step {}: plain (loss, grad_norm) {p:?}, checkpointed {c:?}",
            step + 1
        );
    }
    // The runs learned (the smoke test's criterion: the early phase's loss falls by a fifth), so
    // the agreement is over steps that moved the weights.
    let mean = |range: std::ops::Range<usize>| plain[range].iter().map(|s| s.0).sum::<f64>() / 4.0;
    assert!(mean(8..12) < 0.8 * mean(0..4), "{plain:?}");
}
