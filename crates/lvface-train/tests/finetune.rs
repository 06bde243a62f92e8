//! `finetune.backbone`: a run starts its backbone from an earlier run's weights, and a file that
//! does not fit the configured model stops the run before its folder is created.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use lvface_train::{create_run, train, Experiment, TrainConfig};

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
