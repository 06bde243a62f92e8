//! Curricula beyond the seed paper's two stages, end to end on the smoke data: the three steps of
//! Progressive Cluster Optimization on two ranks, and CurricularFace and AdaFace phases, whose
//! running statistics a resumed run continues exactly.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use lvface_loss::{AdaFaceConfig, CombinedMarginConfig, CurricularFaceConfig, MarginLoss, Phase};
use lvface_train::{create_run, train, train_local, Experiment, RunSummary, TrainConfig};

type B = Autodiff<Flex>;

fn smoke(sets: &[&str]) -> TrainConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    TrainConfig::load(&Experiment::File(path), &sets).unwrap()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-curricula-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

fn phases_of(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join(lvface_train::METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["phase"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn latest_state(dir: &Path) -> serde_json::Value {
    let latest = lvface_train::checkpoint::latest(dir).unwrap().unwrap();
    serde_json::from_str(&std::fs::read_to_string(latest.join("state.json")).unwrap()).unwrap()
}

fn mean(losses: &[(u64, f64)], range: std::ops::Range<usize>) -> f64 {
    let n = range.len() as f64;
    losses[range].iter().map(|l| l.1).sum::<f64>() / n
}

#[test]
fn the_three_step_form_trains_end_to_end_on_two_ranks() {
    // Batch 8 on 2 ranks: 4 steps an epoch, 2 epochs a step of the method.
    let mut config = smoke(&["data.batch_size=8"]);
    let margin = CombinedMarginConfig::arcface(0.5);
    let phase = |start_epoch, sampling, prototypes| Phase {
        start_epoch,
        margin,
        sampling,
        sample_rate: 0.5,
        prototypes,
        ..Phase::default()
    };
    config.loss.curriculum.phases = vec![
        phase(0, true, false),
        phase(2, true, true),
        phase(4, false, true),
    ];
    let dir = fresh_dir("pco");
    create_run(&config, &dir).unwrap();
    let run: RunSummary = train_local::<B>(&dir, &[Default::default()], 2).unwrap();
    assert!(run.finished);
    let phases = phases_of(&dir);
    assert_eq!(phases, [[0; 8], [1; 8], [2; 8]].concat());
    assert!(
        run.losses.iter().all(|l| l.1.is_finite()),
        "{:?}",
        run.losses
    );
    // The losses of 8 identities are noisy from step to step; over the run they fall (measured:
    // the last four steps average 0.47 of the first four), and no later phase undoes the first.
    assert!(
        mean(&run.losses, 20..24) < 0.6 * mean(&run.losses, 0..4),
        "the loss did not fall over the three steps: {:?}",
        run.losses
    );
    let first = run.losses[0].1;
    assert!(
        run.losses[8..].iter().all(|l| l.1 < first),
        "a later step of the method went back above the first loss: {:?}",
        run.losses
    );
    assert_eq!(run.verification[0].1.pairs, 40);
}

/// CurricularFace with sampling for 3 epochs, then AdaFace.
fn other_margins(sets: &[&str]) -> TrainConfig {
    let mut config = smoke(sets);
    config.loss.curriculum.phases = vec![
        Phase {
            start_epoch: 0,
            margin_loss: MarginLoss::CurricularFace,
            curricular_face: CurricularFaceConfig::default(),
            sampling: true,
            sample_rate: 0.5,
            ..Phase::default()
        },
        Phase {
            start_epoch: 3,
            margin_loss: MarginLoss::AdaFace,
            ada_face: AdaFaceConfig::default(),
            ..Phase::default()
        },
    ];
    config
}

#[test]
fn curricular_face_and_ada_face_phases_train_and_resume_exactly() {
    let full_dir = fresh_dir("margins-full");
    create_run(&other_margins(&[]), &full_dir).unwrap();
    let full = train::<B>(&full_dir, &Default::default()).unwrap();
    assert!(full.finished);
    assert!(
        full.losses.iter().all(|l| l.1.is_finite()),
        "{:?}",
        full.losses
    );
    assert!(
        mean(&full.losses, 8..12) < 0.8 * mean(&full.losses, 0..4),
        "CurricularFace's loss did not fall: {:?}",
        full.losses
    );
    let state = latest_state(&full_dir);
    let margins = &state["margins"];
    // t moved from 0 towards the mean target cosine; AdaFace's statistics from their start.
    let t = margins["curricular_face_t"].as_f64().unwrap();
    assert!(t != 0.0 && t.abs() < 1.0, "{margins}");
    let start = AdaFaceConfig::default().init();
    assert!(margins["ada_face_norm_mean"].as_f64().unwrap() != start.norm_mean);
    assert!(margins["ada_face_norm_std"].as_f64().unwrap() != start.norm_std);

    // Stopped inside each phase and resumed: the same losses as without the stops.
    for stop in [6, 15] {
        let split_dir = fresh_dir(&format!("margins-split-{stop}"));
        let stop_at = format!("run.stop_at_step={stop}");
        create_run(&other_margins(&[&stop_at]), &split_dir).unwrap();
        let first = train::<B>(&split_dir, &Default::default()).unwrap();
        assert_eq!(first.steps, stop);
        let resumed = train::<B>(&split_dir, &Default::default()).unwrap();
        assert!(resumed.finished);
        assert_eq!(
            &full.losses[stop as usize..],
            &resumed.losses[..],
            "stopped at {stop}"
        );
        assert_eq!(latest_state(&split_dir)["margins"], *margins);
    }
}
