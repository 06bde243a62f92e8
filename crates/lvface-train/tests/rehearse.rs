//! `lvface-train rehearse` as a user runs it: the first phase on some ranks to a sharded
//! checkpoint, the rest resumed on another rank count, with a peak-memory line for each part.

use std::path::Path;
use std::process::Command;

#[test]
fn a_rehearsal_runs_every_phase_and_resumes_on_another_rank_count() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rehearse-smoke");
    if out.exists() {
        std::fs::remove_dir_all(&out).unwrap();
    }
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_lvface"))
        .args(["rehearse", "--config"])
        .arg(&smoke)
        .args([
            "--classes",
            "3000",
            "--ranks",
            "2",
            "--resume-ranks",
            "3",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[1].starts_with("phase 1: 2 ranks") && lines[1].contains("process peak"));
    // A part that ends before the first poll says so rather than printing 0 GB.
    assert!(!lines[1].contains(" 0.00 GB ("), "{}", lines[1]);
    assert!(lines[2].starts_with("resumed: 3 ranks") && lines[2].contains("predicted"));

    // The last checkpoint was written by the 3 resumed ranks in the stable phase, over the
    // data set's 3000 classes; the metrics hold steps of both phases.
    let latest = lvface_train::checkpoint::latest(&out.join("run"))
        .unwrap()
        .unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(latest.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["world_size"].as_u64(), Some(3), "{state}");
    assert_eq!(state["phase"].as_u64(), Some(1), "{state}");
    assert_eq!(state["classes"].as_u64(), Some(3000), "{state}");
    let metrics =
        std::fs::read_to_string(out.join("run").join(lvface_train::METRICS_FILE)).unwrap();
    let phases: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["phase"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(phases.contains(&0) && phases.contains(&1), "{phases:?}");
    std::fs::remove_dir_all(&out).unwrap();
}
