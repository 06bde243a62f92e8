//! The margin softmax (ArcFace, s = 64, m = 0.5) forward + backward on the default CPU backend:
//! batch 128, width 512, 100,000 and 1,000,000 classes, sample rate 1.0 and 0.1 (Partial FC),
//! materialised (`margin_softmax/fwd_bwd`: the logits as one tensor, burn's autodiff) and
//! blockwise (`margin_softmax/blockwise`: `BlockwiseMarginSoftmax`, the loss and both gradients).
//! `benches/reference/margin_softmax_torch.py` measures the same computation in PyTorch.
//!
//! `LVFACE_BENCH_CLASSES=100000` (comma-separated) limits the class counts: the 1,000,000-class
//! cases hold about 6 GB. `LVFACE_BENCH_BLOCK=2048` sets the blockwise softmax's classes per
//! block. To read one case's peak memory, run it alone under `/usr/bin/time -v`
//! with criterion's filter (`cargo bench --bench loss -- blockwise/C1000000/rate1`);
//! `LVFACE_BENCH_COSINE_BUDGET=0` makes backward recompute the cosines instead of keeping them.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lvface_loss::{
    BlockwiseMarginSoftmax, Columns, CombinedMarginConfig, NegativeSamplerConfig, NormalizedRows,
};

type B = Autodiff<Flex>;
const BATCH: usize = 128;
const DIM: usize = 512;

fn class_counts() -> Vec<usize> {
    match std::env::var("LVFACE_BENCH_CLASSES") {
        Ok(list) => list
            .split(',')
            .map(|c| c.trim().parse().expect("a class count"))
            .collect(),
        Err(_) => vec![100_000, 1_000_000],
    }
}

fn margin_softmax(c: &mut Criterion) {
    let device = Default::default();
    let margin = CombinedMarginConfig::arcface(0.5).init();
    let mut group = c.benchmark_group("margin_softmax/fwd_bwd");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(BATCH as u64));
    for classes in class_counts() {
        let centres =
            Tensor::<B, 2>::random([classes, DIM], Distribution::Normal(0.0, 0.01), &device)
                .require_grad();
        let embeddings =
            Tensor::<B, 2>::random([BATCH, DIM], Distribution::Normal(0.0, 1.0), &device)
                .require_grad();
        let labels: Vec<i64> = (0..BATCH as i64)
            .map(|i| (i * 7919) % classes as i64)
            .collect();
        for rate in [1.0, 0.1] {
            let sampler = NegativeSamplerConfig {
                sample_rate: rate,
                seed: 1,
            }
            .init();
            let mut step = 0;
            group.bench_function(format!("C{classes}/rate{rate}"), |b| {
                b.iter(|| {
                    step += 1;
                    let (weights, targets) = if rate < 1.0 {
                        let sample = sampler.sample(&labels, classes, step);
                        (
                            sample.select_centres(centres.clone()),
                            sample.label_tensor(&device),
                        )
                    } else {
                        let targets = Tensor::from_data(labels.as_slice(), &device);
                        (centres.clone(), targets)
                    };
                    let grads = margin
                        .forward(embeddings.clone(), weights, targets)
                        .backward();
                    // Reading a gradient back waits for the whole backward pass.
                    embeddings.grad(&grads).map(|g| g.sum().into_scalar())
                })
            });
        }
    }
    group.finish();
}

fn blockwise(c: &mut Criterion) {
    let device = Default::default();
    let margin = CombinedMarginConfig::arcface(0.5).init();
    let softmax = match std::env::var("LVFACE_BENCH_BLOCK") {
        Ok(block) => {
            BlockwiseMarginSoftmax::with_block(margin, block.parse().expect("a block size"))
        }
        Err(_) => BlockwiseMarginSoftmax::new(margin),
    };
    // `LVFACE_BENCH_COSINE_BUDGET=0`: backward recomputes the cosines instead of keeping them.
    let softmax = match std::env::var("LVFACE_BENCH_COSINE_BUDGET") {
        Ok(bytes) => softmax.with_cosine_budget(bytes.parse().expect("a number of bytes")),
        Err(_) => softmax,
    };
    let mut group = c.benchmark_group("margin_softmax/blockwise");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(BATCH as u64));
    for classes in class_counts() {
        let centres =
            Tensor::<Flex, 2>::random([classes, DIM], Distribution::Normal(0.0, 0.01), &device);
        let embeddings =
            Tensor::<Flex, 2>::random([BATCH, DIM], Distribution::Normal(0.0, 1.0), &device);
        let labels: Vec<i64> = (0..BATCH as i64)
            .map(|i| (i * 7919) % classes as i64)
            .collect();
        for rate in [1.0, 0.1] {
            let sampler = NegativeSamplerConfig {
                sample_rate: rate,
                seed: 1,
            }
            .init();
            let mut step = 0;
            group.bench_function(format!("C{classes}/rate{rate}"), |b| {
                b.iter(|| {
                    step += 1;
                    let sample = sampler.sample(&labels, classes, step);
                    let columns = if rate < 1.0 {
                        Columns::Rows(&sample.index)
                    } else {
                        Columns::All
                    };
                    let unit = NormalizedRows::new(embeddings.clone());
                    let (stats, cosines) = softmax.row_statistics_and_cosines(
                        &unit,
                        &centres,
                        columns,
                        &sample.labels,
                    );
                    let weights = vec![1.0 / BATCH as f32; BATCH];
                    let args = (
                        sample.labels.as_slice(),
                        stats.max.as_slice(),
                        stats.sum.as_slice(),
                        weights.as_slice(),
                    );
                    let grads = softmax.gradients_from(&unit, &centres, columns, args, cosines);
                    let embedding_grad = unit.backward(grads.unit_embeddings);
                    (embedding_grad.sum().into_scalar(), grads.centres)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, margin_softmax, blockwise);
criterion_main!(benches);
