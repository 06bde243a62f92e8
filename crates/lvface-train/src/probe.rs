//! `probe`: build a backbone, embed random batches, report its size and speed; or time the
//! optimizer step of a run (`--train-step`).

use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use lvface_train::{StepTiming, TrainConfig};
use lvface_vit::VitConfig;

/// What `probe` measured.
pub struct ProbeReport {
    /// Trainable parameters.
    pub params: usize,
    /// Images embedded per second in evaluation mode, after one warm-up batch.
    pub images_per_s: f64,
    /// Width of the embedding.
    pub embedding_dim: usize,
}

/// Embeds `batches` random batches with a freshly initialised `config` model.
pub fn probe<B: Backend>(
    config: &VitConfig,
    batch: usize,
    batches: usize,
    device: &B::Device,
) -> Result<ProbeReport> {
    config.validate()?;
    config.check_device::<B>(device)?;
    let model = config.init::<B>(device);
    let shape = [batch, 3, config.image_size, config.image_size];
    let images = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), device);

    // The first batch pays for kernel compilation and allocation: keep it out of the timing.
    let embedding_dim = model.forward(images.clone()).dims()[1];
    let start = Instant::now();
    for _ in 0..batches {
        // Reading the result back waits for asynchronous backends to finish.
        let _ = model.forward(images.clone()).sum().into_scalar();
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(ProbeReport {
        params: model.num_params(),
        images_per_s: (batch * batches) as f64 / seconds,
        embedding_dim,
    })
}

/// Times the optimizer step of a one-rank run of LVFace's recipe (`configs/base.toml`: the
/// first phase's ArcFace s 64, m 0.5 with Partial FC sampling at rate 0.3, AdamW lr 1e-3,
/// weight decay 0.1, clipping at 5) with backbone `config`, `batch` images per step and
/// `classes` classes, on random batches: `warmup` untimed steps, then `steps` timed ones.
pub fn probe_train_step<B: AutodiffBackend>(
    config: &VitConfig,
    batch: usize,
    classes: usize,
    warmup: usize,
    steps: usize,
    device: &B::Device,
) -> Result<StepTiming> {
    let mut train: TrainConfig = toml::from_str(lvface_train::BASE)?;
    train.vit = config.clone();
    train.data.batch_size = batch;
    lvface_train::time_train_steps::<B>(&train, classes, warmup, steps, device)
}
