//! `configs/smoke.toml` trained with the backbone's products in bf16 (`vit.compute_dtype`):
//! mixed precision learns as f32 does.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use lvface_train::{create_run, train, Experiment, TrainConfig};
use lvface_vit::ComputeDType;

type B = Autodiff<Flex>;

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-train-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

#[test]
fn smoke_run_learns_with_bf16_products() {
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    let sets = ["vit.compute_dtype=bf16".to_string()];
    let config = TrainConfig::load(&Experiment::File(smoke), &sets).unwrap();
    assert_eq!(config.vit.compute_dtype, ComputeDType::Bf16);
    let dir = fresh_dir("precision-bf16");
    create_run(&config, &dir).unwrap();
    let summary = train::<B>(&dir, &Default::default()).unwrap();

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
}
