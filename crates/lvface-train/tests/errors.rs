//! Bad input gives a message naming what is wrong, from the binary as a user sees it, and
//! leaves what exists untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::backend::{Autodiff, Flex};
use lvface_train::{create_run, train, Experiment, TrainConfig};

fn smoke_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml")
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-errors-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

/// Runs `lvface-train train` and returns its stderr, asserting that it failed cleanly.
fn fails(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_lvface"))
        .arg("train")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn smoke_with(out: &Path, set: &str) -> String {
    let config = smoke_path();
    fails(&[
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        set,
    ])
}

#[test]
fn unknown_key_is_named() {
    let out = fresh_dir("unknown");
    let stderr = smoke_with(&out, "optim.lrr=0.1");
    assert!(stderr.contains("lrr"), "{stderr}");
    assert!(stderr.contains("optim"), "{stderr}");
    assert!(!out.exists());

    let err =
        TrainConfig::load(&Experiment::File(smoke_path()), &["vit.depthh=2".into()]).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("depthh") && message.contains("vit"),
        "{message}"
    );
}

#[test]
fn bad_value_names_key_and_value() {
    let out = fresh_dir("bad-value");
    let stderr = smoke_with(&out, "optim.lr=-0.5");
    assert!(
        stderr.contains("optim.lr must be finite and positive, got -0.5"),
        "{stderr}"
    );
    assert!(!out.exists());

    let cases = [
        (
            "loss.curriculum.phases[1].start_epoch=9",
            "loss.curriculum.phases[1].start_epoch",
        ),
        (
            "data.batch_size=0",
            "data.batch_size must be positive, got 0",
        ),
        (
            "vit.num_heads=5",
            "vit.num_heads must divide embed_dim = 32, got 5",
        ),
        ("optim.beta2=1.5", "optim.beta2 must be in [0, 1), got 1.5"),
    ];
    for (set, expected) in cases {
        let err = TrainConfig::load(&Experiment::File(smoke_path()), &[set.into()]).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains(expected), "{set}: {message}");
    }
}

#[test]
fn missing_data_path_is_named_and_nothing_is_created() {
    let out = fresh_dir("missing-data");
    let stderr = smoke_with(&out, "data.rec=/nonexistent/faces");
    assert!(
        stderr.contains("data.rec: /nonexistent/faces does not exist"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn occupied_run_folder_is_refused() {
    let out = fresh_dir("occupied");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "precious").unwrap();
    let config = TrainConfig::load(&Experiment::File(smoke_path()), &[]).unwrap();
    let message = format!("{:#}", create_run(&config, &out).unwrap_err());
    assert!(message.contains("is not empty"), "{message}");
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "precious"
    );
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn unreadable_checkpoint_is_named_and_nothing_is_overwritten() {
    let out = fresh_dir("bad-checkpoint");
    let sets = ["run.stop_at_step=2".to_string()];
    let config = TrainConfig::load(&Experiment::File(smoke_path()), &sets).unwrap();
    create_run(&config, &out).unwrap();
    let summary = train::<Autodiff<Flex>>(&out, &Default::default()).unwrap();
    assert_eq!(summary.steps, 2);

    let latest = lvface_train::checkpoint::latest(&out).unwrap().unwrap();
    let backbone = latest.join("backbone.safetensors");
    std::fs::write(&backbone, b"not a safetensors file").unwrap();
    let before = snapshot(&out);

    let stderr = fails(&["--resume", out.to_str().unwrap()]);
    assert!(stderr.contains("cannot resume from checkpoint"), "{stderr}");
    assert!(stderr.contains("backbone.safetensors"), "{stderr}");
    assert_eq!(
        before,
        snapshot(&out),
        "the failed resume changed the run folder"
    );
}

#[test]
fn an_oversized_optimizer_state_is_refused_before_it_is_read() {
    let out = fresh_dir("huge-optimizer");
    let sets = ["run.stop_at_step=2".to_string()];
    let config = TrainConfig::load(&Experiment::File(smoke_path()), &sets).unwrap();
    create_run(&config, &out).unwrap();
    train::<Autodiff<Flex>>(&out, &Default::default()).unwrap();
    let latest = lvface_train::checkpoint::latest(&out).unwrap().unwrap();
    // A sparse 64 GB file: nothing is written to disk, and reading it whole would not fit.
    let optimizer = std::fs::OpenOptions::new()
        .write(true)
        .open(latest.join("optimizer.bin"))
        .unwrap();
    optimizer.set_len(64 << 30).unwrap();

    let stderr = fails(&["--resume", out.to_str().unwrap()]);
    assert!(
        stderr.contains("optimizer.bin is 68719476736 bytes"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}
