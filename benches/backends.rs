//! CPU backends compared on the same work: a vit_t-width model (two blocks) forward + backward,
//! batch 32. Flex is always measured; `--features ndarray` adds burn's NdArray backend and
//! `--features x86-v4` builds Flex with its AVX-512 kernels.

// criterion_group! generates undocumented functions.
#![allow(missing_docs)]

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lvface_vit::VitConfig;

const BATCH: usize = 32;

fn step<B: burn::tensor::backend::AutodiffBackend>(c: &mut Criterion, name: &str) {
    let device = Default::default();
    let config = VitConfig {
        depth: 2,
        ..VitConfig::vit_t()
    };
    let model = config.init::<B>(&device);
    let x = Tensor::<B, 4>::random(
        [BATCH, 3, 112, 112],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut group = c.benchmark_group("backend/vit_t_depth2_train_step");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            let grads = model.forward(x.clone()).powf_scalar(2.0).mean().backward();
            model.pos_embed.grad(&grads).map(|g| g.sum().into_scalar())
        })
    });
    group.finish();
}

fn backends(c: &mut Criterion) {
    let flex = if cfg!(feature = "x86-v4") {
        "flex-x86-v4"
    } else {
        "flex"
    };
    step::<Autodiff<Flex>>(c, flex);
    #[cfg(feature = "ndarray")]
    step::<Autodiff<burn::backend::NdArray>>(c, "ndarray");
}

criterion_group!(benches, backends);
criterion_main!(benches);
