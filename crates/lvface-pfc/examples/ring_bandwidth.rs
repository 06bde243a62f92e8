//! Times the all-reduce of `BurnCollective::global` (the TCP ring) on loopback: `WORLD` ranks,
//! one thread each in this process (the ring does not use burn-collective, so they can share
//! it), `REPEATS` all-reduces of `ELEMENTS` f32 after one warm-up.
//!
//! `cargo run --release -p lvface-pfc --example ring_bandwidth -- [WORLD] [ELEMENTS] [REPEATS]`
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::Instant;

use burn::backend::Flex;
use burn::prelude::*;
use lvface_pfc::{BurnCollective, Collective, Launch};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("WORLD ELEMENTS REPEATS are whole numbers"))
        .collect();
    let world = args.first().copied().unwrap_or(2);
    let elements = args.get(1).copied().unwrap_or(1 << 24);
    let repeats = args.get(2).copied().unwrap_or(5);
    let port = 33_000 + (std::process::id() % 500) as u16 * 20;
    let seconds: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                scope.spawn(move || {
                    let vars: HashMap<&str, String> = [
                        ("WORLD_SIZE", world.to_string()),
                        ("RANK", rank.to_string()),
                        ("MASTER_ADDR", "127.0.0.1".into()),
                        ("MASTER_PORT", port.to_string()),
                    ]
                    .into_iter()
                    .collect();
                    let launch = Launch::from_vars(|k| vars.get(k).cloned())
                        .unwrap()
                        .unwrap();
                    let device = Default::default();
                    let comm = BurnCollective::<Flex>::global(&launch, device).unwrap();
                    let tensor = Tensor::<Flex, 1>::ones([elements], &Default::default());
                    comm.all_reduce_sum(tensor.clone()).unwrap();
                    let start = Instant::now();
                    for _ in 0..repeats {
                        let sum = comm.all_reduce_sum(tensor.clone()).unwrap();
                        assert_eq!(sum.dims(), [elements]);
                    }
                    start.elapsed().as_secs_f64() / repeats as f64
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let worst = seconds.iter().copied().fold(0.0, f64::max);
    let sent = 2.0 * (world as f64 - 1.0) / world as f64 * 4.0 * elements as f64;
    println!(
        "{world} ranks, {elements} f32 ({:.1} MB): {:.1} ms per all-reduce, {:.2} GB/s sent per rank",
        4.0 * elements as f64 / 1e6,
        worst * 1e3,
        sent / worst / 1e9
    );
}
