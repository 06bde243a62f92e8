//! Runs sharded steps on in-process ranks and prints what they communicated and how much memory
//! the process peaked at, next to what `lvface_pfc::scaling` predicts.
//!
//! `cargo run --release -p lvface-pfc --example scaling_check -- CLASSES WORLD BATCH [DIM] [RATE]
//! [blockwise|materialised]`
#![allow(clippy::print_stdout)]

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;
use lvface_loss::CombinedMarginConfig;
use lvface_pfc::scaling::{ring_bytes_sent, shard_memory, step_traffic, StepShape};
use lvface_pfc::{run_local_peers, Collective, PartialFcConfig, ShardLoss, ShardSoftmax};

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .take(4)
        .map(|a| {
            a.parse()
                .expect("CLASSES WORLD BATCH [DIM] are whole numbers")
        })
        .collect();
    let rate: f64 = std::env::args()
        .nth(5)
        .map_or(1.0, |r| r.parse().expect("RATE is a number"));
    let softmax = match std::env::args().nth(6).as_deref() {
        None | Some("blockwise") => ShardSoftmax::Blockwise,
        Some("materialised") => ShardSoftmax::Materialised,
        Some(other) => panic!("the softmax is `blockwise` or `materialised`, not `{other}`"),
    };
    let (classes, world, batch) = (args[0], args[1], args[2]);
    let dim = args.get(3).copied().unwrap_or(512);
    let before = peak_rss_bytes().unwrap_or(0);
    let margin = CombinedMarginConfig::arcface(0.5).init();
    let config = PartialFcConfig {
        sample_rate: rate,
        seed: 1,
        softmax,
    };
    let started = std::time::Instant::now();
    let traffic = run_local_peers::<Flex, _, _>(world, &[Default::default()], |comm| {
        let pfc = config.init(comm.rank(), world, classes).unwrap();
        let shard = pfc.shard();
        let device = Default::default();
        let centres = Tensor::<Flex, 2>::random(
            [shard.num_local(), dim],
            Distribution::Normal(0.0, 0.01),
            &device,
        );
        let embeddings =
            Tensor::<Flex, 2>::random([batch, dim], Distribution::Normal(0.0, 1.0), &device);
        let labels: Vec<i64> = (0..batch)
            .map(|i| ((comm.rank() * batch + i) * 7919 % classes) as i64)
            .collect();
        pfc.step::<Autodiff<Flex>, _>(
            embeddings,
            &labels,
            centres,
            ShardLoss::Margin(margin),
            0,
            &comm,
        )
        .unwrap();
        comm.traffic()
    })
    .unwrap();
    let elapsed = started.elapsed();
    let shape = StepShape {
        world_size: world,
        batch,
        dim,
        num_classes: classes,
        sample_rate: rate,
        prototypes: false,
        row_maximum: false,
        curricular_face: false,
    };
    let predicted = step_traffic(shape);
    let memory = shard_memory(shape);
    println!(
        "classes={classes} world={world} batch/rank={batch} dim={dim} rate={rate} softmax={softmax:?} step={elapsed:.2?}"
    );
    println!(
        "traffic per rank: measured calls={} elements={} | predicted calls={} elements={} | ring bytes sent {}",
        traffic[0].calls,
        traffic[0].elements,
        predicted.calls,
        predicted.elements,
        ring_bytes_sent(predicted.elements, world)
    );
    // The step runs no optimizer: centres and their gradient are half the `parameters` figure,
    // which counts AdamW's two moments too.
    let predicted_step = memory.parameters / 2 + memory.activations;
    println!(
        "memory: predicted per rank centres+gradient {} MB + activations {} MB = {} MB, x{world} ranks = {} MB; \
         measured process peak {} MB above the start ({} MB)",
        memory.parameters / 2 / 1_000_000,
        memory.activations / 1_000_000,
        predicted_step / 1_000_000,
        predicted_step * world as u64 / 1_000_000,
        peak_rss_bytes().unwrap_or(0).saturating_sub(before) / 1_000_000,
        before / 1_000_000
    );
}
