//! One process per rank, as torchrun launches them (RANK, WORLD_SIZE, LOCAL_RANK,
//! LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, and LVFACE_NODE_ADDR across nodes) on loopback:
//! the run folder is shared, the processes train exactly as the same number of in-process ranks
//! do, on one "node" or on two (127.0.0.1 and 127.0.0.2, both loopback on Linux), and a folder
//! left by an earlier run stops every rank at once with one message.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use burn::backend::{Autodiff, Flex};
use lvface_train::{checkpoint, create_run, train_local, Experiment, TrainConfig};

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

/// Starts one `lvface-train train` process per rank of `nodes` (each node's address and its
/// number of ranks, in rank order), all with `--out out`, the smoke config and `sets`, and
/// torchrun's environment plus `env`; rank 0 runs on the first node.
fn launch(out: &Path, nodes: &[(&str, usize)], sets: &[&str], env: &[(&str, &str)]) -> Vec<Child> {
    let config = smoke();
    let mut args = vec!["train", "--config", config.to_str().unwrap()];
    args.extend(["--out", out.to_str().unwrap()]);
    for set in sets {
        args.extend(["--set", set]);
    }
    spawn_ranks(&args, nodes, env)
}

/// Starts `lvface-train args` once per rank of `nodes`, with torchrun's environment plus `env`.
fn spawn_ranks(args: &[&str], nodes: &[(&str, usize)], env: &[(&str, &str)]) -> Vec<Child> {
    let world: usize = nodes.iter().map(|(_, ranks)| ranks).sum();
    let port = free_ports(world as u16 + 1);
    let mut children = Vec::new();
    for &(node, ranks) in nodes {
        for local_rank in 0..ranks {
            let mut command = Command::new(env!("CARGO_BIN_EXE_lvface"));
            command
                .args(args)
                .env("RANK", children.len().to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", local_rank.to_string())
                .env("LOCAL_WORLD_SIZE", ranks.to_string())
                .env("MASTER_ADDR", nodes[0].0)
                .env("MASTER_PORT", port.to_string());
            if nodes.len() > 1 {
                command.env("LVFACE_NODE_ADDR", node);
            }
            let child = command
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            children.push(child);
        }
    }
    children
}

/// Each child's output, rank by rank; a child still running after `limit` is killed (and fails).
fn wait_all(children: Vec<Child>, limit: Duration) -> Vec<Output> {
    let deadline = Instant::now() + limit;
    let mut children = children;
    for child in &mut children {
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
        }
    }
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// A launch on `nodes` (address, ranks) trains exactly as the same number of in-process ranks:
/// the same loss at every step and the same verification.
fn launched_trains_like_in_process(name: &str, nodes: &[(&str, usize)], env: &[(&str, &str)]) {
    let world: usize = nodes.iter().map(|(_, ranks)| ranks).sum();
    let sets: Vec<String> = SETS.iter().map(|s| s.to_string()).collect();
    let config = TrainConfig::load(&Experiment::File(smoke()), &sets).unwrap();
    let local = fresh_dir(&format!("{name}-in-process"));
    create_run(&config, &local).unwrap();
    let expected = train_local::<B>(&local, &[Default::default()], world).unwrap();

    let launched = fresh_dir(&format!("{name}-processes"));
    // `env` may carry the configuration instead of `--set`.
    let sets: &[&str] = if env.is_empty() { &SETS } else { &[] };
    let children = launch(&launched, nodes, sets, env);
    for (rank, output) in wait_all(children, Duration::from_secs(600))
        .into_iter()
        .enumerate()
    {
        assert!(
            output.status.success(),
            "rank {rank}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let got = losses(&launched);
    if world <= 2 {
        assert_eq!(got, expected.losses);
    } else {
        // With two ranks every sum is a + b in either transport, so the runs are equal bit for
        // bit; from three on, the in-process all-reduce (burn-collective's binary tree) and the
        // TCP ring add the ranks in different orders, and the losses agree to rounding.
        let steps = |l: &[(u64, f64)]| l.iter().map(|s| s.0).collect::<Vec<_>>();
        assert_eq!(steps(&got), steps(&expected.losses));
        for (&(step, a), &(_, b)) in got.iter().zip(&expected.losses) {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs(),
                "step {step}: loss {a} launched, {b} in process"
            );
        }
    }
    let report = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
    };
    assert_eq!(
        report(&launched)["verification"],
        report(&local)["verification"]
    );
}

#[test]
fn two_launched_processes_train_like_two_in_process_ranks() {
    launched_trains_like_in_process("one-node", &[("127.0.0.1", 2)], &[]);
}

/// Two nodes of two ranks each: the second node's ranks report 127.0.0.2 as their address, so
/// the ring's connections to them go there. The configuration comes from the environment, next
/// to the launch's own LVFACE_NODE_ADDR, which must not be taken for a key.
#[test]
fn two_nodes_of_two_processes_train_like_four_in_process_ranks() {
    let second = std::net::TcpListener::bind("127.0.0.2:0")
        .expect("this test needs 127.0.0.2 to be a loopback address, as on Linux");
    drop(second);
    launched_trains_like_in_process(
        "two-nodes",
        &[("127.0.0.1", 2), ("127.0.0.2", 2)],
        &[("LVFACE_DATA__BATCH_SIZE", "8")],
    );
}

/// A run folder left by an earlier run: rank 0 refuses it, and the other rank, which cannot tell
/// it from one rank 0 has just made, hears so through the rendezvous instead of waiting for
/// rank 0 until the rendezvous times out (5 minutes).
#[test]
fn stale_run_folder_stops_every_rank_at_once_with_one_message() {
    let sets: Vec<String> = SETS.iter().map(|s| s.to_string()).collect();
    let config = TrainConfig::load(&Experiment::File(smoke()), &sets).unwrap();
    let stale = fresh_dir("stale");
    create_run(&config, &stale).unwrap();
    std::fs::write(stale.join(lvface_train::METRICS_FILE), "").unwrap();

    let start = Instant::now();
    let children = launch(&stale, &[("127.0.0.1", 2)], &SETS, &[]);
    let outputs = wait_all(children, Duration::from_secs(120));
    let elapsed = start.elapsed();
    // The first line: a backtrace (RUST_BACKTRACE) would differ from rank to rank.
    let errors: Vec<String> = outputs
        .iter()
        .enumerate()
        .map(|(rank, output)| {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "rank {rank}: {stderr}");
            stderr.lines().next().unwrap_or_default().to_string()
        })
        .collect();
    assert!(errors[0].contains("is not empty"), "{}", errors[0]);
    assert!(errors[0].contains("--resume"), "{}", errors[0]);
    assert_eq!(errors[0], errors[1]);
    assert!(
        elapsed < Duration::from_secs(60),
        "the ranks took {elapsed:?} to stop"
    );
}

/// A run of many short steps on two or three processes, checkpointed at every epoch end
/// (every 4 steps), for the tests that stop it from outside.
const LONG: [&str; 3] = [
    "data.batch_size=8",
    "loss.curriculum.epochs=400",
    "eval.every_epochs=0",
];

/// Waits until `run` has a checkpoint and `metrics.jsonl` at least `steps` lines.
fn wait_for_progress(run: &Path, steps: usize, children: &mut [Child]) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let lines = std::fs::read_to_string(run.join(lvface_train::METRICS_FILE))
            .map_or(0, |m| m.lines().count());
        if lines >= steps && run.join("checkpoints/latest").is_file() {
            return;
        }
        for (rank, child) in children.iter_mut().enumerate() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("rank {rank} ended early: {status}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "no progress in {}",
            run.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The step `checkpoints/latest` names.
fn latest_step(run: &Path) -> u64 {
    let latest = checkpoint::latest(run).unwrap().unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(latest.join("state.json")).unwrap()).unwrap();
    state["step"].as_u64().unwrap()
}

/// Rank 1 of three is killed (SIGKILL, as the out-of-memory killer or a failed node does):
/// both other ranks stop with an error that names rank 1, the step, and the checkpoint to
/// resume from.
#[test]
fn a_killed_rank_is_named_with_the_step_and_the_checkpoint_to_resume_from() {
    let run = fresh_dir("killed");
    let mut children = launch(&run, &[("127.0.0.1", 3)], &LONG, &[]);
    wait_for_progress(&run, 6, &mut children);
    children[1].kill().unwrap();
    let start = Instant::now();
    let outputs = wait_all(children, Duration::from_secs(120));
    let checkpoint = checkpoint::latest(&run).unwrap().unwrap();
    for rank in [0, 2] {
        let stderr = String::from_utf8_lossy(&outputs[rank].stderr);
        assert_eq!(
            outputs[rank].status.code(),
            Some(1),
            "rank {rank}: {stderr}"
        );
        assert!(stderr.contains("rank 1 was lost"), "rank {rank}: {stderr}");
        assert!(stderr.contains("step "), "rank {rank}: {stderr}");
        // The checkpoint named is whole and resumable. It is the latest, or the one before it
        // when rank 0 published a checkpoint while this rank was failing (every rank had
        // written its shard; only the final agreement met the lost rank).
        let named = stderr
            .split("resume from checkpoint ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("rank {rank} names no checkpoint: {stderr}"));
        let named = Path::new(named);
        assert!(
            named.join("state.json").is_file(),
            "rank {rank}: {} is not a whole checkpoint",
            named.display()
        );
        let step_of = |dir: &Path| dir.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            step_of(named) <= step_of(&checkpoint),
            "rank {rank}: {} is newer than the latest, {}",
            named.display(),
            checkpoint.display()
        );
        assert!(stderr.contains("--resume"), "rank {rank}: {stderr}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "the ranks took {:?} to stop",
        start.elapsed()
    );
}

/// SIGTERM to one rank only: both ranks stop at the same step boundary, write a checkpoint of
/// that step, and exit normally with status 143; the run then resumes from it, and a second
/// SIGTERM stops it again later, every step logged once.
#[test]
fn sigterm_to_one_rank_stops_every_rank_at_one_step_with_a_checkpoint() {
    use std::os::unix::process::ExitStatusExt;
    let run = fresh_dir("sigterm");
    let terminate = |child: &Child| {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let mut children = launch(&run, &[("127.0.0.1", 2)], &LONG, &[]);
    wait_for_progress(&run, 2, &mut children);
    terminate(&children[1]);
    let outputs = wait_all(children, Duration::from_secs(120));
    for (rank, output) in outputs.iter().enumerate() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.signal(), None, "rank {rank}: {stderr}");
        assert_eq!(output.status.code(), Some(143), "rank {rank}: {stderr}");
    }
    let stopped = latest_step(&run);
    let logged = losses(&run);
    assert_eq!(logged.last().unwrap().0, stopped);
    assert!(stopped < 1600, "the run ended instead of stopping");

    let resume = ["train", "--resume", run.to_str().unwrap()];
    let mut children = spawn_ranks(&resume, &[("127.0.0.1", 2)], &[]);
    wait_for_progress(&run, stopped as usize + 2, &mut children);
    terminate(&children[0]);
    for (rank, output) in wait_all(children, Duration::from_secs(120))
        .iter()
        .enumerate()
    {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(143), "rank {rank}: {stderr}");
    }
    let again = latest_step(&run);
    assert!(again > stopped, "{again} after {stopped}");
    let steps: Vec<u64> = losses(&run).iter().map(|l| l.0).collect();
    assert_eq!(steps, (1..=again).collect::<Vec<_>>());
}
