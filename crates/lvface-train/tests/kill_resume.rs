//! A run killed with SIGKILL in the middle of an epoch and resumed from its last checkpoint
//! ends exactly where an uninterrupted run with the same seed ends (CPU): the same losses step
//! for step, the same verification.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The smoke configuration with 32 images per identity: 16 steps per epoch, 96 in all, so that
/// a kill lands mid-epoch with room to spare.
const SETS: [&str; 2] = [
    "data.synthetic.images_per_identity=32",
    "run.checkpoint_every=5",
];

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-kill-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

fn train_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lvface"));
    command
        .arg("train")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn new_run(out: &Path) -> Command {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    let mut args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "--out".to_string(),
        out.display().to_string(),
    ];
    for set in SETS {
        args.extend(["--set".to_string(), set.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    train_command(&args)
}

fn succeed(mut command: Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `(step, loss)` of every line of `metrics.jsonl`.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

fn steps_logged(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}

fn verification(run: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run.join("report.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["verification"].clone()
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_same_end() {
    let whole = fresh_dir("whole");
    succeed(new_run(&whole));

    let killed = fresh_dir("killed");
    let mut child = new_run(&killed).spawn().unwrap();
    // Kill once step 21 (epoch 1, batch 5 of 16) is logged: past the checkpoint of step 20.
    let start = Instant::now();
    while steps_logged(&killed) < 21 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(start.elapsed() < Duration::from_secs(600), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let logged = steps_logged(&killed);
    assert!(
        logged < 96 && !killed.join("report.json").exists(),
        "the run finished before the kill landed ({logged} steps logged)"
    );

    succeed(train_command(&["--resume", killed.to_str().unwrap()]));
    assert_eq!(losses(&killed), losses(&whole));
    assert_eq!(verification(&killed), verification(&whole));
}
