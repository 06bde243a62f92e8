//! Fine-tuning: a run starts its backbone from an earlier run's weights (`finetune.backbone`),
//! and a file that does not fit the configured model stops the run before its folder is
//! created; what the `finetune` keys freeze stays to the bit, the backbone's rate is the
//! multiple asked for, and a fine-tuning run resumes exactly.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use common::LEARNING_SIZE;
use lvface_train::{
    create_run, train, train_local, Experiment, RunSummary, TrainConfig, METRICS_FILE,
};

type B = Autodiff<Flex>;

fn smoke(sets: &[String]) -> TrainConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    TrainConfig::load(&Experiment::File(path), sets).unwrap()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-finetune-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

/// The tensors of a safetensors file by name, as raw bytes.
fn tensors(file: &Path) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, entry)| {
            let range = entry["data_offsets"].as_array().unwrap();
            let (a, b) = (range[0].as_u64().unwrap(), range[1].as_u64().unwrap());
            (name, data[a as usize..b as usize].to_vec())
        })
        .collect()
}

fn sets(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_run_starts_from_an_earlier_runs_backbone_and_a_misfit_stops_it_before_its_folder() {
    // The source: 4 steps of the smoke run.
    let source = fresh_dir("source");
    create_run(&smoke(&sets(&["run.stop_at_step=4"])), &source).unwrap();
    train::<B>(&source, &Default::default()).unwrap();
    let source_backbone = lvface_train::checkpoint::latest_backbone(&source).unwrap();

    // One step from the source's folder. The smoke run warms up from learning rate 0, so its
    // first step leaves the parameters where they start: the source's, bit for bit (the
    // BatchNorms' running statistics move with the batch, so they differ).
    let from = format!("finetune.backbone={}", source.display());
    let tuned = fresh_dir("tuned");
    let config = smoke(&sets(&[&from, "run.stop_at_step=1"]));
    create_run(&config, &tuned).unwrap();
    train::<B>(&tuned, &Default::default()).unwrap();
    let tuned_backbone = lvface_train::checkpoint::latest_backbone(&tuned).unwrap();
    let (want, got) = (tensors(&source_backbone), tensors(&tuned_backbone));
    let mut compared = 0;
    for (name, bytes) in &want {
        if name.contains("running_") || name.ends_with("num_batches_tracked") {
            continue;
        }
        assert!(&got[name] == bytes, "{name} is not the source's");
        compared += 1;
    }
    assert!(compared > 10, "only {compared} tensors compared");
    // The same run without the key starts from the seed's weights, which the source's four
    // steps have moved: the equality above is the key's doing.
    let fresh = fresh_dir("fresh");
    create_run(&smoke(&sets(&["run.stop_at_step=1"])), &fresh).unwrap();
    train::<B>(&fresh, &Default::default()).unwrap();
    let fresh_backbone = tensors(&lvface_train::checkpoint::latest_backbone(&fresh).unwrap());
    assert!(fresh_backbone["pos_embed"] != want["pos_embed"]);

    // Another depth, a missing file, a folder without checkpoints: errors naming the problem,
    // and no run folder.
    let cases = [
        (
            sets(&[&from, "vit.depth=2"]),
            vec!["finetune.backbone", "depth 2", "blocks.1"],
        ),
        (
            sets(&["finetune.backbone=/nonexistent/weights.pt"]),
            vec!["/nonexistent/weights.pt", "no such file"],
        ),
        (
            sets(&[&format!(
                "finetune.backbone={}",
                source.join("checkpoints").display()
            )]),
            vec!["finetune.backbone", "not an lvface run"],
        ),
    ];
    for (i, (sets, words)) in cases.into_iter().enumerate() {
        let dir = fresh_dir(&format!("misfit-{i}"));
        let err = format!("{:#}", create_run(&smoke(&sets), &dir).unwrap_err());
        for word in words {
            assert!(err.contains(word), "case {i}: {word:?} not in: {err}");
        }
        assert!(!dir.exists(), "case {i}: the run folder was created");
    }
}

/// A run of the smoke config with `sets`, in a fresh folder `name`.
fn run(name: &str, sets: &[&str]) -> (PathBuf, RunSummary) {
    let dir = fresh_dir(name);
    create_run(&smoke(&self::sets(sets)), &dir).unwrap();
    let summary = train::<B>(&dir, &Default::default()).unwrap();
    (dir, summary)
}

fn latest_tensors(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    tensors(&lvface_train::checkpoint::latest_backbone(dir).unwrap())
}

/// Every file of the latest checkpoint's classifier folder (centres, their AdamW moments, the
/// prototype bank) by name, as bytes.
fn classifier_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let latest = lvface_train::checkpoint::latest(dir).unwrap().unwrap();
    let files: BTreeMap<String, Vec<u8>> = std::fs::read_dir(latest.join("classifier"))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    assert!(
        files.keys().any(|name| name.ends_with(".safetensors")),
        "{files:?}"
    );
    files
}

/// Whether two runs' classifier checkpoints hold the same bytes.
fn same_classifier(a: &Path, b: &Path) -> bool {
    classifier_files(a) == classifier_files(b)
}

/// The names of the tensors of `a` and `b` that differ.
fn differing(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.keys().filter(|k| a[*k] != b[*k]).cloned().collect()
}

fn grad_norms(dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join(METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["grad_norm"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_frozen_backbone_stays_to_the_bit_and_verifies_as_the_source_did() {
    let (source, _) = run("frozen-source", &["run.stop_at_step=4"]);
    let from = format!("finetune.backbone={}", source.display());
    let (tuned, summary) = run("frozen", &[&from, "finetune.freeze_backbone=true"]);
    assert!(summary.finished);

    // Every tensor, BatchNorm's running statistics included, is the source's.
    let (want, got) = (latest_tensors(&source), latest_tensors(&tuned));
    assert!(want.keys().any(|k| k.ends_with("running_var")));
    assert_eq!(differing(&want, &got), Vec::<String>::new());
    // The classification layer trained.
    assert!(grad_norms(&tuned).iter().all(|&n| n == 0.0));
    assert!(summary.losses.last().unwrap().1 < summary.losses[1].1);

    // The starting weights were verified on the run's pairs before its first step, and the
    // frozen backbone verifies the same at the end.
    assert_eq!(summary.start_accuracy.len(), summary.verification.len());
    assert!(!summary.verification.is_empty());
    for ((name, start), (end_name, end)) in summary.start_accuracy.iter().zip(&summary.verification)
    {
        assert_eq!(name, end_name);
        assert_eq!(*start, end.accuracy, "{name}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tuned.join("report.json")).unwrap()).unwrap();
    let first = &report["verification"][0];
    assert_eq!(first["start_accuracy"], first["accuracy"]);
}

#[test]
fn frozen_blocks_and_the_patch_embedding_stay_to_the_bit_while_the_rest_moves() {
    let depth = "vit.depth=2";
    let (source, _) = run("blocks-source", &[depth, "run.stop_at_step=4"]);
    let from = format!("finetune.backbone={}", source.display());
    let (tuned, _) = run(
        "blocks",
        &[
            depth,
            &from,
            "finetune.frozen_blocks=1",
            "run.stop_at_step=6",
        ],
    );
    let changed = differing(&latest_tensors(&source), &latest_tensors(&tuned));
    for name in &changed {
        assert!(
            !name.starts_with("blocks.0.")
                && !name.starts_with("patch_embed.")
                && name != "pos_embed",
            "{name} is frozen but changed"
        );
    }
    for name in [
        "blocks.1.attn.qkv.weight",
        "blocks.1.mlp.fc1.weight",
        "feature.0.weight",
    ] {
        assert!(
            changed.iter().any(|c| c == name),
            "{name} did not move: {changed:?}"
        );
    }

    // The patch embedding alone.
    let (tuned, _) = run(
        "patch",
        &[
            depth,
            &from,
            "finetune.freeze_patch_embed=true",
            "run.stop_at_step=6",
        ],
    );
    let changed = differing(&latest_tensors(&source), &latest_tensors(&tuned));
    assert!(!changed
        .iter()
        .any(|n| n.starts_with("patch_embed.") || n == "pos_embed"));
    assert!(
        changed.iter().any(|n| n == "blocks.0.attn.qkv.weight"),
        "{changed:?}"
    );
}

#[test]
fn the_backbone_moves_at_the_multiple_of_the_rate_and_the_centres_at_the_rate() {
    let (source, _) = run("rate-source", &["run.stop_at_step=4"]);
    let from = format!("finetune.backbone={}", source.display());
    // Two steps: the first at rate 0 (the warm-up starts there), the second at the warm-up's
    // next rate. Until the centres have moved once, the backbone's gradient does not depend on
    // their rate, so the backbone of a run at rate 2r with multiplier 0.5 is that of a run at
    // rate r, to the bit (halving is exact in floating point), while its centres move as those
    // of a run at 2r without multiplier.
    let steps = "run.stop_at_step=2";
    let (scaled, _) = run(
        "rate-scaled",
        &[
            &from,
            steps,
            "optim.lr=4e-3",
            "finetune.backbone_lr_scale=0.5",
        ],
    );
    let (plain, _) = run("rate-plain", &[&from, steps, "optim.lr=2e-3"]);
    let (fast, _) = run("rate-fast", &[&from, steps, "optim.lr=4e-3"]);
    assert_eq!(
        differing(&latest_tensors(&scaled), &latest_tensors(&plain)),
        Vec::<String>::new()
    );
    assert!(!differing(&latest_tensors(&scaled), &latest_tensors(&fast)).is_empty());
    assert!(same_classifier(&scaled, &fast));
    assert!(!same_classifier(&scaled, &plain));
}

#[test]
fn the_classifier_warms_up_alone_then_the_backbone_moves_and_the_run_resumes_exactly() {
    let (source, _) = run("warmup-source", &["run.stop_at_step=4"]);
    let from = format!("finetune.backbone={}", source.display());
    let keys = [
        from.as_str(),
        "finetune.classifier_warmup_steps=3",
        "finetune.backbone_lr_scale=0.5",
        "run.checkpoint_every=3",
    ];
    // Held for three steps: the backbone, running statistics included, is the source's.
    let (split, _) = run(
        "warmup-split",
        &[&keys[..], &["run.stop_at_step=3"]].concat(),
    );
    assert_eq!(
        differing(&latest_tensors(&source), &latest_tensors(&split)),
        Vec::<String>::new()
    );
    assert_eq!(grad_norms(&split), [0.0; 3]);

    // Resumed to the end, it moves, and ends as the same run uninterrupted, to the bit.
    let resumed = train::<B>(&split, &Default::default()).unwrap();
    assert!(resumed.finished);
    let norms = grad_norms(&split);
    assert_eq!(norms.len(), 24);
    assert!(norms[3..].iter().all(|&n| n > 0.0), "{norms:?}");
    let (whole, full) = run("warmup-whole", &keys);
    assert_eq!(full.losses[3..], resumed.losses[..]);
    assert_eq!(
        differing(&latest_tensors(&whole), &latest_tensors(&split)),
        Vec::<String>::new()
    );
    assert!(same_classifier(&whole, &split));
    assert_eq!(full.start_accuracy, resumed.start_accuracy);
    assert!(!full.start_accuracy.is_empty());
}

#[test]
fn fine_tuning_on_new_identities_improves_on_their_held_out_pairs_over_the_start() {
    // The source: a third of the run (2 of 6 epochs) on the default synthetic identities.
    let (source, _) = run(
        "new-ids-source",
        &[&LEARNING_SIZE[..], &["run.stop_at_step=36"]].concat(),
    );
    // The new data: other identities (another seed), their own held-out pairs.
    let from = format!("finetune.backbone={}", source.display());
    let (_, tuned) = run(
        "new-ids",
        &[
            &LEARNING_SIZE[..],
            &[from.as_str(), "data.synthetic.seed=77"],
        ]
        .concat(),
    );
    let start = tuned.start_accuracy[0].1;
    let (name, end) = (&tuned.verification[0].0, tuned.verification[0].1.accuracy);
    let pixels = tuned.pixel_baseline[0].1.accuracy;
    assert_eq!(name, "synthetic");
    // Measured: pixels 0.557, start 0.760, end 0.883. The starting weights carry what the source
    // learnt to identities it never saw, and training on those identities adds to it.
    assert!(start > pixels + 0.1, "start {start}, pixels {pixels}");
    assert!(end > start + 0.05, "start {start}, end {end}");
}

#[test]
fn two_ranks_hold_the_backbone_at_the_same_steps_and_freeze_the_same_blocks() {
    let depth = "vit.depth=2";
    let (source, _) = run("ranks-source", &[depth, "run.stop_at_step=4"]);
    let from = format!("finetune.backbone={}", source.display());
    let keys = [
        depth,
        &from,
        "finetune.classifier_warmup_steps=2",
        "finetune.frozen_blocks=1",
        "run.stop_at_step=5",
    ];
    let dir = fresh_dir("ranks");
    create_run(&smoke(&sets(&keys)), &dir).unwrap();
    let devices = [Default::default()];
    let summary = train_local::<B>(&dir, &devices, 2).unwrap();
    assert_eq!(summary.steps, 5);
    let norms = grad_norms(&dir);
    assert_eq!(norms[..2], [0.0, 0.0]);
    assert!(norms[2..].iter().all(|&n| n > 0.0), "{norms:?}");
    let changed = differing(&latest_tensors(&source), &latest_tensors(&dir));
    assert!(changed
        .iter()
        .all(|n| !n.starts_with("blocks.0.") && n != "pos_embed"));
    assert!(
        changed.iter().any(|n| n == "blocks.1.attn.qkv.weight"),
        "{changed:?}"
    );
}

#[test]
fn a_run_that_stopped_before_its_first_checkpoint_verifies_its_start_once() {
    let (source, _) = run("once-source", &["run.stop_at_step=4"]);
    let from = format!("finetune.backbone={}", source.display());
    let (tuned, _) = run("once", &[&from, "run.stop_at_step=1"]);
    // As if it had been killed before writing a checkpoint: it starts again from the file.
    std::fs::remove_dir_all(tuned.join("checkpoints")).unwrap();
    let summary = train::<B>(&tuned, &Default::default()).unwrap();
    assert_eq!(summary.steps, 1);
    // One step-0 line per pair set, not two.
    let start_sets: Vec<String> = std::fs::read_to_string(tuned.join("eval.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["step"] == 0)
        .map(|v| v["set"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(start_sets, ["synthetic", "synthetic-masked"]);
}
