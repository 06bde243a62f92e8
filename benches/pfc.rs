//! One sharded Partial FC step (ArcFace, s = 64, m = 0.5; forward + backward, with the
//! all-gathers and all-reduces) over 1, 2 and 4 in-process ranks at 1,000,000 classes, width
//! 512, a global batch of 128 split over the ranks, sample rate 1.0.
//!
//! In-process ranks share this machine's cores: the figures show what sharding and its
//! communication cost, not a speed-up. `LVFACE_BENCH_CLASSES` (one count) overrides the class
//! count; 1,000,000 classes hold about 5 GB on one rank.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lvface_loss::CombinedMarginConfig;
use lvface_pfc::{run_local_peers, Collective, PartialFcConfig, ShardLoss};

const GLOBAL_BATCH: usize = 128;
const DIM: usize = 512;

fn classes() -> usize {
    std::env::var("LVFACE_BENCH_CLASSES")
        .map(|c| c.trim().parse().expect("a class count"))
        .unwrap_or(1_000_000)
}

fn sharded_step(c: &mut Criterion) {
    let classes = classes();
    let margin = CombinedMarginConfig::arcface(0.5).init();
    let mut group = c.benchmark_group(format!("pfc_step/{classes}_classes"));
    group
        .sample_size(10)
        .throughput(Throughput::Elements(GLOBAL_BATCH as u64));
    for world in [1usize, 2, 4] {
        let batch = GLOBAL_BATCH / world;
        let device = Default::default();
        let shards: Vec<Tensor<Flex, 2>> = (0..world)
            .map(|rank| {
                let pfc = PartialFcConfig::default()
                    .init(rank, world, classes)
                    .unwrap();
                Tensor::random(
                    [pfc.shard().num_local(), DIM],
                    Distribution::Normal(0.0, 0.01),
                    &device,
                )
            })
            .collect();
        let embeddings =
            Tensor::<Flex, 2>::random([GLOBAL_BATCH, DIM], Distribution::Default, &device);
        let labels: Vec<i64> = (0..GLOBAL_BATCH)
            .map(|i| (i * 7919 % classes) as i64)
            .collect();
        group.bench_function(format!("{world}_ranks"), |b| {
            b.iter(|| {
                run_local_peers::<Flex, _, _>(world, &[Default::default()], |comm| {
                    let rank = comm.rank();
                    let pfc = PartialFcConfig::default()
                        .init(rank, world, classes)
                        .unwrap();
                    let mine = embeddings
                        .clone()
                        .slice([rank * batch..(rank + 1) * batch, 0..DIM]);
                    pfc.step::<Autodiff<Flex>, _>(
                        mine,
                        &labels[rank * batch..(rank + 1) * batch],
                        shards[rank].clone(),
                        ShardLoss::Margin(margin),
                        0,
                        &comm,
                    )
                    .unwrap()
                    .loss
                })
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, sharded_step);
criterion_main!(benches);
