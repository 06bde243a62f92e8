//! Faults during a run, through the `lvface-train` binary: a corrupt image under
//! `data.on_corrupt = "skip"` on two ranks, and a checkpoint that cannot be written because the
//! file system refuses to grow a file (a full disk, as far as the writer can tell).

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn smoke() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml")
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-faults-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lvface"))
        .arg("train")
        .args(args)
        .output()
        .unwrap()
}

fn succeed(output: Output) -> Output {
    assert!(
        output.status.success(),
        "{:?}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn report(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap()
}

/// Two ranks over an image folder of 4 identities of 8 images, one of them not an image: each
/// epoch the bad file falls in one rank's batch, and without a replacement that rank's batch
/// would be one short of the other's, which the sharded classifier cannot gather.
#[test]
fn a_corrupt_image_skipped_on_two_ranks_keeps_batches_full_and_is_named() {
    let dir = fresh_dir("skip");
    let set = dir.join("set");
    let synth = Command::new(env!("CARGO_BIN_EXE_lvface"))
        .args([
            "data",
            "synth",
            s(&set),
            "--format",
            "folders",
            "--size",
            "32",
        ])
        .args([
            "--ids",
            "4",
            "--per-id",
            "8",
            "--held-out",
            "2",
            "--pairs",
            "0",
        ])
        .output()
        .unwrap();
    succeed(synth);
    let images = set.join("images");
    let bad = images.join("0000001").join("00003.jpg");
    assert!(bad.is_file(), "{} was not rendered", bad.display());
    std::fs::write(&bad, b"\xff\xd8\xff not really a jpeg").unwrap();

    let run = dir.join("run");
    let output = succeed(train(&[
        "--config",
        s(&smoke()),
        "--out",
        s(&run),
        "--devices",
        "2",
        "--set",
        &format!("data.rec={}", s(&images)),
        "--set",
        "data.batch_size=4",
        "--set",
        "data.on_corrupt=skip",
        "--set",
        "eval.every_epochs=0",
    ]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(s(&bad)) && l.contains("takes its place"))
        .collect();
    // 32 images on 2 ranks of batch 4 use every image every epoch: 6 epochs, 6 replacements.
    assert_eq!(warnings.len(), 6, "stderr: {stderr}");
    let report = report(&run);
    assert_eq!(report["steps"], 24, "{report}");
    assert_eq!(report["skipped_images"], 6, "{report}");
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
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

/// A resumed run whose files may not grow past a limit (RLIMIT_FSIZE, with SIGXFSZ ignored so
/// that the write fails with EFBIG instead of killing the process) fails at its next checkpoint:
/// a normal error exit naming the file, the previous checkpoint untouched and still `latest`,
/// no half-written folder left, and a resume without the limit goes on from that checkpoint.
#[test]
fn a_checkpoint_the_disk_refuses_leaves_the_previous_one_and_names_the_file() {
    let run = fresh_dir("full");
    succeed(train(&[
        "--config",
        s(&smoke()),
        "--out",
        s(&run),
        "--set",
        "run.stop_at_step=4",
    ]));
    let checkpoints = run.join("checkpoints");
    let previous = checkpoints.join("step-00000004");
    let latest = || std::fs::read_to_string(checkpoints.join("latest")).unwrap();
    assert_eq!(latest(), "step-00000004");
    let before = snapshot(&previous);
    let largest = before.values().map(Vec::len).max().unwrap();
    // `ulimit -f` counts 512-byte blocks in POSIX shells and 1024-byte ones in bash: a limit
    // of a quarter of the largest checkpoint file in the first reading stays below it in the
    // second, and far above the few kilobytes of metrics the resumed steps append.
    let blocks = largest / 512 / 4;
    let metrics = std::fs::metadata(run.join(lvface_train::METRICS_FILE))
        .unwrap()
        .len() as usize;
    assert!(
        blocks * 512 > 4 * metrics && blocks * 512 > 16 << 10,
        "the checkpoint ({largest} bytes) is too small to tell from the logs ({metrics} bytes)"
    );

    let limited = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -f {blocks} && trap '' XFSZ && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_lvface"))
        .args(["train", "--resume", s(&run)])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&limited.stderr);
    assert_eq!(limited.status.signal(), None, "stderr: {stderr}");
    assert_eq!(limited.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    let target = checkpoints.join("step-00000008.tmp");
    assert!(
        stderr.contains(s(&target)) && stderr.contains("File too large"),
        "stderr names neither {} nor the reason: {stderr}",
        target.display()
    );
    assert_eq!(latest(), "step-00000004");
    assert_eq!(snapshot(&previous), before);
    let mut left: Vec<String> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["latest", "step-00000004"]);

    let resumed = succeed(train(&["--resume", s(&run)]));
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        stdout.contains(&format!("resuming at step 4 from {}", previous.display())),
        "{stdout}"
    );
    assert_eq!(report(&run)["steps"], 24);
}
