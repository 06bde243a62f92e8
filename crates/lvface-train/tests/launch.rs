//! One process per rank, as torchrun launches them (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)
//! on loopback: the run folder is shared, and the processes train exactly as the same number
//! of in-process ranks do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use burn::backend::{Autodiff, Flex};
use lvface_train::{create_run, train_local, Experiment, TrainConfig};

type B = Autodiff<Flex>;

const SETS: [&str; 1] = ["data.batch_size=8"];

fn smoke() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml")
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-launch-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

/// A port with the next `count` ports free at the time of asking.
fn free_ports(count: u16) -> u16 {
    'search: for _ in 0..100 {
        let first = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if first.checked_add(count).is_none() {
            continue;
        }
        for port in first..first + count {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue 'search;
            }
        }
        return first;
    }
    panic!("no {count} consecutive free ports");
}

fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn two_launched_processes_train_like_two_in_process_ranks() {
    let world = 2;
    let sets: Vec<String> = SETS.iter().map(|s| s.to_string()).collect();
    let config = TrainConfig::load(&Experiment::File(smoke()), &sets).unwrap();
    let local = fresh_dir("in-process");
    create_run(&config, &local).unwrap();
    let expected = train_local::<B>(&local, &[Default::default()], world).unwrap();

    let launched = fresh_dir("processes");
    let port = free_ports(world as u16 + 1);
    let children: Vec<_> = (0..world)
        .map(|rank| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_lvface-train"));
            command
                .args(["train", "--config", smoke().to_str().unwrap()])
                .args(["--out", launched.to_str().unwrap()]);
            for set in SETS {
                command.args(["--set", set]);
            }
            command
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (rank, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "rank {rank}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let got = losses(&launched);
    assert_eq!(got, expected.losses);
    let report = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
    };
    assert_eq!(
        report(&launched)["verification"],
        report(&local)["verification"]
    );
}
