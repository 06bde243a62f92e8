//! `probe`: build a backbone, embed random batches, report its size and speed; or time the
//! optimizer step of a run (`--train-step`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use lvface_train::{StepTiming, TrainConfig};
use lvface_vit::VitConfig;

use crate::backend::{on_backend, BackendKind};
use crate::DType;

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

/// `lvface parity`: the vit-parity fixture on a backend.
#[derive(clap::Args)]
pub struct ParityArgs {
    /// The fixture folder: `weights.safetensors` (insightface names) and `io.safetensors`
    /// (`input` `[3, 3, 112, 112]`, PyTorch's `output` `[3, 512]`).
    #[arg(long, default_value = "crates/lvface-vit/tests/fixtures/vit-parity")]
    pub fixture: PathBuf,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
    /// The model's `compute_dtype`.
    #[arg(long, value_enum, default_value_t = DType::F32)]
    pub compute_dtype: DType,
    /// The relative L2 error accepted. Default: 1e-4 in f32 (5e-3 on cuda, whose f32 matmuls
    /// run as TF32 with a 10-bit mantissa), 1e-2 in bf16, 5e-3 in f16. Measured: f32 5.4e-7 on
    /// cpu, 1.5e-6 on wgpu (lavapipe); bf16 4.1e-3 on cpu; f16 7.5e-4 on cpu, 2.0e-3 on lavapipe.
    #[arg(long)]
    pub tolerance: Option<f64>,
}

/// Runs the fixture and prints one line; returns whether the error is within the tolerance.
pub fn parity(args: &ParityArgs) -> Result<bool> {
    let tolerance = args
        .tolerance
        .unwrap_or(match (args.compute_dtype, args.backend) {
            (DType::F32, BackendKind::Cuda) => 5e-3,
            (DType::F32, _) => 1e-4,
            (DType::Bf16, _) => 1e-2,
            (DType::F16, _) => 5e-3,
        });
    let config = VitConfig {
        compute_dtype: args.compute_dtype.into(),
        ..VitConfig::vit_micro()
    };
    let (max_abs, relative) = on_backend!(args.backend, |on| {
        parity_errors::<on::Backend>(&config, &args.fixture, &on::device(0)?)?
    });
    let pass = relative <= tolerance;
    println!(
        "parity backend={:?} compute_dtype={:?} max_abs_diff={max_abs:.3e} relative_l2={relative:.3e} \
         tolerance={tolerance:.1e} {}",
        args.backend,
        args.compute_dtype,
        if pass { "pass" } else { "FAIL" }
    );
    Ok(pass)
}

/// The largest absolute difference and the relative L2 error of `config`'s embeddings of the
/// fixture's input from PyTorch's.
fn parity_errors<B: Backend>(
    config: &VitConfig,
    fixture: &Path,
    device: &B::Device,
) -> Result<(f64, f64)> {
    config.check_device::<B>(device)?;
    let weights = fixture.join("weights.safetensors");
    let model = config
        .init::<B>(device)
        .load_weights(&weights)
        .with_context(|| format!("loading {}", weights.display()))?;
    let io = fixture.join("io.safetensors");
    let read = |name: &str| -> Result<TensorData> {
        let mut store = burn_store::SafetensorsStore::from_file(&io);
        let snapshot = burn_store::ModuleStore::get_snapshot(&mut store, name)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", io.display()))?
            .with_context(|| format!("{} has no tensor `{name}`", io.display()))?;
        snapshot
            .to_data()
            .map_err(|e| anyhow::anyhow!("reading `{name}` of {}: {e:?}", io.display()))
    };
    let output = model.forward(Tensor::<B, 4>::from_data(read("input")?, device));
    let expected = Tensor::<B, 2>::from_data(read("output")?, device);
    let diff = output - expected.clone();
    let max_abs: f32 = diff.clone().abs().max().into_scalar().elem();
    let error: f32 = diff.powi_scalar(2).sum().sqrt().into_scalar().elem();
    let norm: f32 = expected.powi_scalar(2).sum().sqrt().into_scalar().elem();
    Ok((f64::from(max_abs), f64::from(error / norm)))
}
