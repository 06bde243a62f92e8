//! vit_t on the default CPU backend: inference (eval, batch 64) and one training step
//! (forward + backward, batch 32). `benches/reference/vit_torch.py` measures the same in PyTorch.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lvface_vit::VitConfig;

fn images<B: Backend>(batch: usize, device: &B::Device) -> Tensor<B, 4> {
    Tensor::random([batch, 3, 112, 112], Distribution::Normal(0.0, 1.0), device)
}

fn inference(c: &mut Criterion) {
    let device = Default::default();
    let model = VitConfig::vit_t().init::<Flex>(&device);
    let batch = 64;
    let x = images::<Flex>(batch, &device);
    let mut group = c.benchmark_group("vit_t/eval");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(batch as u64));
    group.bench_function(format!("batch{batch}"), |b| {
        // Reading the result back makes sure the work is done before the clock stops.
        b.iter(|| model.forward(x.clone()).sum().into_scalar())
    });
    group.finish();
}

fn train_step(c: &mut Criterion) {
    type B = Autodiff<Flex>;
    let device = Default::default();
    let model = VitConfig::vit_t().init::<B>(&device);
    let batch = 32;
    let x = images::<B>(batch, &device);
    let mut group = c.benchmark_group("vit_t/train_step");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(batch as u64));
    group.bench_function(format!("batch{batch}"), |b| {
        b.iter(|| {
            let loss = model.forward(x.clone()).powf_scalar(2.0).mean();
            let grads = loss.backward();
            model.pos_embed.grad(&grads).map(|g| g.sum().into_scalar())
        })
    });
    group.finish();
}

criterion_group!(benches, inference, train_step);
criterion_main!(benches);
