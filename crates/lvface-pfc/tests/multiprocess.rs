//! The sharded step with one process per rank on loopback (`BurnCollective::global`: a TCP ring,
//! launched with a torchrun-style environment), against one device.
//!
//! The test starts 2, 3, then 4 copies of this test binary running the ignored `worker_process`
//! test, each with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set, and reads back the loss
//! and gradients each prints. It takes about a quarter of a second, so it runs by default.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use burn::prelude::*;
use common::{assert_close, labels, matrix, rank_rows, to_vec, Inner, B};
use lvface_loss::CombinedMarginConfig;
use lvface_pfc::{broadcast_bytes, BurnCollective, Collective, Launch, PartialFcConfig, ShardLoss};

const DIM: usize = 8;
const BATCH: usize = 3;
const CLASSES: usize = 11;
const DEADLINE: Duration = Duration::from_secs(60);

/// One rank's numbers, as printed by a worker.
#[derive(Debug)]
struct RankResult {
    loss: f32,
    embedding_grad: Vec<f32>,
    centre_grad: Vec<f32>,
    /// What arrived from rank 0's [`root_id`] through [`broadcast_bytes`].
    shared_id: Vec<u8>,
}

/// 128 bytes, as large as a NCCL unique id, every value from 0 to 255 among them: rank 0's in
/// the test of the exchange that carries NCCL's id over the TCP ring.
fn root_id() -> Vec<u8> {
    (0..128u32).map(|i| (i * 255 / 127) as u8).collect()
}

fn encode(values: &[f32]) -> String {
    values
        .iter()
        .map(|v| format!("{:08x}", v.to_bits()))
        .collect::<Vec<_>>()
        .join(",")
}

fn decode(text: &str) -> Vec<f32> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| f32::from_bits(u32::from_str_radix(s, 16).unwrap()))
        .collect()
}

/// The body of one process: join the group from the environment, run the step on this rank's
/// slice of the shared data, print the numbers.
#[test]
// Not a test of its own: the body of each process the loopback test starts.
#[ignore = "a worker process of `two_three_and_four_processes_equal_one_device`"]
fn worker_process() {
    // Run by hand without the launch environment, this entry point has nothing to do.
    let Some(launch) = Launch::from_env().unwrap() else {
        return;
    };
    let (rank, world) = (launch.rank, launch.world_size);
    let comm = BurnCollective::<Inner>::global(&launch, Default::default()).unwrap();
    assert_eq!((comm.rank(), comm.world_size()), (rank, world));
    let n = world * BATCH;
    let x = to_vec(matrix::<Inner>(1, n, DIM));
    let y = labels(3, n, CLASSES);
    let pfc = PartialFcConfig::default()
        .init(rank, world, CLASSES)
        .unwrap();
    let range = pfc.shard().range();
    let mine = rank_rows::<Inner>(&x, rank, BATCH, DIM);
    let step = pfc
        .step::<B, _>(
            mine,
            &y[rank * BATCH..(rank + 1) * BATCH],
            matrix::<Inner>(2, CLASSES, DIM).slice([range, 0..DIM]),
            ShardLoss::Margin(CombinedMarginConfig::arcface(0.5).init()),
            0,
            &comm,
        )
        .unwrap();
    // The other ranks pass zeros: only the root's bytes may arrive.
    let mine = if rank == 0 { root_id() } else { vec![0; 128] };
    let shared_id = broadcast_bytes::<Inner, _>(&comm, &mine, 0, &Default::default()).unwrap();
    let line = format!(
        "RESULT {} {} {} {}",
        encode(&[step.loss]),
        encode(&to_vec(step.embedding_grad)),
        encode(&to_vec(step.centre_grad)),
        shared_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    // The line is the worker's answer to the parent test, read from its stdout.
    #[allow(clippy::print_stdout)]
    {
        println!("{line}");
    }
    // Leave together: a rank that exits early would take its tensors with it.
    comm.barrier(&Default::default()).unwrap();
}

fn spawn(world: usize, port: u16) -> Vec<Child> {
    let exe = std::env::current_exe().unwrap();
    (0..world)
        .map(|rank| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "worker_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("WORLD_SIZE", world.to_string())
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

/// What a finished child printed: stdout, stderr.
fn output(child: &mut Child) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (out, err)
}

/// The workers' results, or, as soon as one fails, what it printed (the others are stopped:
/// they would wait for it until their join timeout).
fn collect(mut children: Vec<Child>) -> Result<Vec<RankResult>, String> {
    let start = Instant::now();
    let mut done = vec![None; children.len()];
    while done.iter().any(Option::is_none) {
        for (i, child) in children.iter_mut().enumerate() {
            if done[i].is_none() {
                done[i] = child.try_wait().unwrap();
            }
        }
        let failed = done
            .iter()
            .position(|status| status.is_some_and(|s| !s.success()));
        if failed.is_some() || start.elapsed() > DEADLINE {
            for child in &mut children {
                let _ = child.kill();
                let _ = child.wait();
            }
            let Some(rank) = failed else {
                panic!("the worker processes did not finish within {DEADLINE:?}");
            };
            let (out, err) = output(&mut children[rank]);
            return Err(format!("rank {rank} failed.\n{out}\n{err}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    children
        .iter_mut()
        .enumerate()
        .map(|(rank, child)| {
            let (out, err) = output(child);
            let line = out
                .lines()
                // libtest prints `test worker_process ... ` before the body's output, on the
                // same line.
                .find_map(|l| l.split_once("RESULT ").map(|(_, rest)| rest))
                .ok_or_else(|| format!("rank {rank} printed no result.\n{out}\n{err}"))?;
            let parts: Vec<&str> = line.split(' ').collect();
            Ok(RankResult {
                loss: decode(parts[0])[0],
                embedding_grad: decode(parts[1]),
                centre_grad: decode(parts[2]),
                shared_id: (0..parts[3].len() / 2)
                    .map(|i| u8::from_str_radix(&parts[3][2 * i..2 * i + 2], 16).unwrap())
                    .collect(),
            })
        })
        .collect()
}

/// Runs `world` workers, on another port range if one of the ports was taken.
fn run_workers(world: usize) -> Vec<RankResult> {
    for attempt in 0..4u32 {
        // Port ranges unlikely to be taken, different for concurrent runs of this test.
        let seed = std::process::id() + 7_919 * attempt + 101 * world as u32;
        let port = 20_000 + (seed % 1_000) as u16 * 10;
        match collect(spawn(world, port)) {
            Ok(results) => return results,
            Err(why) if why.contains("cannot listen") => continue,
            Err(why) => panic!("{why}"),
        }
    }
    panic!("no free port range for {world} workers after 4 tries");
}

#[test]
fn two_three_and_four_processes_equal_one_device() {
    let margin = CombinedMarginConfig::arcface(0.5).init();
    for world in [2, 3, 4] {
        let results = run_workers(world);

        let n = world * BATCH;
        let x = Tensor::<B, 2>::from_inner(matrix(1, n, DIM)).require_grad();
        let w = Tensor::<B, 2>::from_inner(matrix(2, CLASSES, DIM)).require_grad();
        let y = Tensor::<B, 1, Int>::from_data(
            TensorData::new(labels(3, n, CLASSES), [n]),
            &Default::default(),
        );
        let loss = margin.forward(x.clone(), w.clone(), y);
        let want_loss = loss.clone().into_scalar();
        let grads = loss.backward();
        let want_x = to_vec(x.grad(&grads).unwrap());
        let want_w = to_vec(w.grad(&grads).unwrap());

        let got_x: Vec<f32> = results
            .iter()
            .flat_map(|r| r.embedding_grad.clone())
            .collect();
        let got_w: Vec<f32> = results.iter().flat_map(|r| r.centre_grad.clone()).collect();
        for (rank, r) in results.iter().enumerate() {
            assert_eq!(
                r.shared_id,
                root_id(),
                "{world} processes: rank {rank}'s copy of the id"
            );
        }
        for r in &results {
            assert_close(
                &format!("{world} processes: loss"),
                &[r.loss],
                &[want_loss],
                1e-5,
            );
        }
        assert_close(
            &format!("{world} processes: embeddings"),
            &got_x,
            &want_x,
            1e-5,
        );
        assert_close(
            &format!("{world} processes: centres"),
            &got_w,
            &want_w,
            1e-5,
        );
    }
}
