//! A minimal reproduction of burn-collective 0.21's global mode, without lvface-pfc: `WORLD`
//! processes (one node each, one device per node) on loopback do `CALLS` all-reduces of a tensor
//! of the same shape, with the global strategy given, and print how far each got.
//!
//! `cargo run -p lvface-pfc --example collective_repro -- [WORLD] [CALLS] [ring|centralized|tree]`
//!
//! The parent starts the children (itself with `REPRO_RANK` set) and gives up after 30 s. With
//! burn-collective 0.21 every process completes all-reduce 0 and hangs in all-reduce 1, after its
//! data has been exchanged: `SyncService::sync` (burn-collective `src/global/node/sync.rs:71-79`)
//! clears a copy of its list of synced peers (`.to_vec()`, then `.clear()`) instead of the list,
//! so from the second sync on the list never equals the set of nodes again. This is why
//! `BurnCollective::global` uses a TCP ring of its own (`docs/distributed.md`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn_collective::{
    all_reduce, finish_collective, register, AllReduceStrategy, CollectiveConfig, PeerId,
    ReduceOperation,
};

type Bk = Flex;

fn strategy(name: &str) -> AllReduceStrategy {
    match name {
        "ring" => AllReduceStrategy::Ring,
        "centralized" => AllReduceStrategy::Centralized,
        "tree" => AllReduceStrategy::Tree(2),
        other => panic!("unknown strategy {other}"),
    }
}

fn child(rank: usize, world: usize, calls: usize, strategy_name: &str, port: u16) {
    let start = Instant::now();
    let say = |what: String| {
        println!(
            "[rank {rank} +{:.2}s] {what}",
            start.elapsed().as_secs_f32()
        );
    };
    if rank == 0 {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        std::thread::spawn(move || {
            runtime.block_on(burn_collective::start_global_orchestrator(port));
        });
    }
    let address = |p: u16| burn_communication::Address::from_str(&format!("ws://127.0.0.1:{p}"));
    let data_port = port + 1 + rank as u16;
    let config = CollectiveConfig::default()
        .with_num_devices(1)
        .with_num_nodes(world as u32)
        .with_global_address(address(port).unwrap())
        .with_node_address(address(data_port).unwrap())
        .with_data_service_port(data_port)
        .with_global_all_reduce_strategy(strategy(strategy_name));
    let peer = PeerId::from(rank);
    register::<Bk>(peer, Default::default(), config).unwrap();
    say("registered".into());
    let device = Default::default();
    for call in 0..calls {
        let values: Vec<f32> = (0..8)
            .map(|i| (rank * 100 + call * 10 + i) as f32)
            .collect();
        let tensor = Tensor::<Bk, 1>::from_data(TensorData::new(values, [8]), &device);
        let reduced =
            all_reduce::<Bk>(peer, tensor.into_primitive().tensor(), ReduceOperation::Sum).unwrap();
        let reduced = Tensor::<Bk, 1>::from_primitive(TensorPrimitive::Float(reduced));
        let got: Vec<f32> = reduced.into_data().to_vec().unwrap();
        let want: Vec<f32> = (0..8)
            .map(|i| (0..world).map(|r| (r * 100 + call * 10 + i) as f32).sum())
            .collect();
        assert_eq!(got, want, "all-reduce {call}");
        say(format!("all-reduce {call} done"));
    }
    finish_collective::<Bk>(peer).unwrap();
    say("finished".into());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let world: usize = args.first().map_or(2, |a| a.parse().unwrap());
    let calls: usize = args.get(1).map_or(5, |a| a.parse().unwrap());
    let strategy_name = args.get(2).cloned().unwrap_or_else(|| "ring".into());
    if let Ok(rank) = std::env::var("REPRO_RANK") {
        let port: u16 = std::env::var("REPRO_PORT").unwrap().parse().unwrap();
        child(rank.parse().unwrap(), world, calls, &strategy_name, port);
        return;
    }
    let port = 30_000 + (std::process::id() % 1_000) as u16 * 10;
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..world)
        .map(|rank| {
            Command::new(&exe)
                .args(&args)
                .env("REPRO_RANK", rank.to_string())
                .env("REPRO_PORT", port.to_string())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    let mut status = vec![None; world];
    while status.iter().any(Option::is_none) && start.elapsed() < Duration::from_secs(30) {
        for (i, c) in children.iter_mut().enumerate() {
            if status[i].is_none() {
                status[i] = c.try_wait().unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in &mut children {
        let _ = c.kill();
    }
    println!(
        "{world} processes, {calls} all-reduces, {strategy_name}: {}",
        if status.iter().all(|s| s.is_some_and(|s| s.success())) {
            "all finished".to_string()
        } else {
            format!("not all finished after 30 s: {status:?}")
        }
    );
}
