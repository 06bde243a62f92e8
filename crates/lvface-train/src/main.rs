//! `lvface`: train, evaluate, export, import, embed, verify and pack data from one command
//! (`cargo install --path crates/lvface-train`, or `cargo xtask COMMAND ...` from a checkout).
#![allow(clippy::print_stdout)]

mod backend;
mod data;
mod deploy;
mod eval;
mod memory;
mod probe;
mod rehearse;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use backend::BackendKind;
use clap::{Parser, Subcommand};
use lvface_train::{create_run, fresh_run_dir, with_autodiff, Experiment, RunSummary, TrainConfig};
use lvface_vit::VitConfig;

/// `vit.compute_dtype` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DType {
    /// f32 throughout.
    F32,
    /// bfloat16 products.
    Bf16,
    /// IEEE half products.
    F16,
}

impl From<DType> for lvface_vit::ComputeDType {
    fn from(dtype: DType) -> Self {
        match dtype {
            DType::F32 => Self::F32,
            DType::Bf16 => Self::Bf16,
            DType::F16 => Self::F16,
        }
    }
}

/// Face-recognition training with LVFace: a plain ViT and a curriculum of face losses.
#[derive(Parser)]
#[command(name = "lvface", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a backbone with the LVFace curriculum, then verify it on the configured pair sets.
    Train {
        /// Experiment file layered over configs/base.toml (default: the built-in CPU demo,
        /// configs/default.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one key, e.g. `--set optim.lr=5e-4` (repeatable; last wins).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Run folder (default: a fresh folder under runs/).
        #[arg(long, conflicts_with = "resume")]
        out: Option<PathBuf>,
        /// Continue the run in this folder from its latest checkpoint, with its own config.
        #[arg(long, conflicts_with_all = ["config", "sets"])]
        resume: Option<PathBuf>,
        /// Where to run.
        #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
        backend: BackendKind,
        /// Ranks in this process: the backbone data parallel, the classifier sharded. On cuda
        /// and wgpu, rank r runs on GPU r; on cpu, all ranks share the CPU. Under a
        /// torchrun-style launch (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set) each process
        /// is one rank instead, on GPU LOCAL_RANK.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        devices: u64,
    },
    /// Build a backbone, embed random batches, print its parameter count and images/s; with
    /// --train-step, time the optimizer step of a one-rank run instead.
    Probe {
        /// insightface model name: vit_t, vit_s, vit_b, vit_l_dp005_mask_005, ...
        #[arg(long, default_value = "vit_t")]
        model: String,
        /// Images per batch.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Timed batches after one warm-up batch.
        #[arg(long, default_value_t = 3, conflicts_with = "train_step")]
        batches: usize,
        /// Where to run.
        #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
        backend: BackendKind,
        /// Time whole training steps (forward, Partial FC margin softmax, backward, clipping,
        /// AdamW over backbone and centres) with configs/base.toml's first phase, on random
        /// batches.
        #[arg(long)]
        train_step: bool,
        /// Classes of the centre matrix (with --train-step).
        #[arg(long, default_value_t = 10_000, requires = "train_step")]
        classes: usize,
        /// Untimed steps first (with --train-step).
        #[arg(long, default_value_t = 3, requires = "train_step")]
        warmup: usize,
        /// Timed steps (with --train-step).
        #[arg(long, default_value_t = 10, requires = "train_step")]
        steps: usize,
        /// Set the model's `grad_checkpoint` (on in the presets from vit_b up): true trains on
        /// `Autodiff<_, BalancedCheckpointing>`, false on plain `Autodiff` (with --train-step).
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set, requires = "train_step")]
        grad_checkpoint: Option<bool>,
        /// The model's `compute_dtype`: the type of its matrix products.
        #[arg(long, value_enum, default_value_t = DType::F32)]
        compute_dtype: DType,
    },
    /// The vit-parity fixture (insightface's ViT computed in PyTorch) on a backend: prints the
    /// largest difference of the embeddings from PyTorch's and exits with 1 above the tolerance.
    Parity(probe::ParityArgs),
    /// Evaluate a run's latest checkpoint, a weights file, or embeddings computed elsewhere on
    /// .bin pair sets (and a model on IJB-B/C folders): one line per set on stdout,
    /// report.json, report.md and ROC plots.
    Eval(eval::Args),
    /// Write a backbone as ONNX (opset 17, `[N,3,112,112]` -> `[N,512]`) and check MFR's rules.
    Export(deploy::ExportArgs),
    /// Turn an insightface / LVFace .pt backbone into lvface weights (.safetensors).
    Import(deploy::ImportArgs),
    /// Embed face images into an .npy file.
    Embed(deploy::EmbedArgs),
    /// Cosine similarity of two faces and the same/different decision.
    Verify(deploy::VerifyArgs),
    /// Run a recipe's classifier and curriculum at its real class count with a tiny backbone on
    /// in-process ranks: the first phase to a sharded checkpoint, the rest resumed on another
    /// rank count; prints each part's peak memory next to the prediction.
    Rehearse(rehearse::Args),
    /// What the cuda backend loads at run time and where it was found: the NVIDIA driver,
    /// NVRTC, the CUDA headers NVRTC compiles against, NCCL; exits with 1 when something it
    /// needs is missing. `--backend cuda` sets these up itself before it starts.
    CudaEnv {
        /// Then all-reduce this many f32 values through a one-rank NCCL communicator on GPU 0
        /// (what the ranks of a multi-GPU run go through) and check the sum.
        #[arg(long, value_name = "ELEMENTS")]
        all_reduce: Option<usize>,
    },
    /// Data tools: inspect a RecordIO set or .bin file, pack an image folder into RecordIO,
    /// render synthetic identities.
    Data {
        #[command(subcommand)]
        command: data::Command,
    },
}

impl Command {
    /// The backend this command runs on and the GPUs of this process it uses at once; main checks
    /// it was compiled in (and prepares CUDA's libraries) before any command starts.
    fn backend(&self) -> Option<(BackendKind, usize)> {
        match self {
            Command::Train {
                backend, devices, ..
            } => Some((*backend, *devices as usize)),
            Command::Probe { backend, .. } => Some((*backend, 1)),
            Command::Parity(args) => Some((args.backend, 1)),
            Command::Eval(args) => args.backend().map(|kind| (kind, 1)),
            Command::Embed(args) => Some((args.backend, 1)),
            Command::Verify(args) => Some((args.backend, 1)),
            _ => None,
        }
    }
}

fn main() -> Result<()> {
    memory::keep_freed_memory();
    let cli = Cli::parse();
    if let Some((kind, _gpus)) = cli.command.backend() {
        backend::ensure_compiled(kind)?;
        #[cfg(feature = "cuda")]
        if kind == BackendKind::Cuda {
            // Ranks on several GPUs, threads or processes, all-reduce through NCCL.
            let launched_world = lvface_pfc::Launch::from_env()
                .ok()
                .flatten()
                .map_or(1, |launch| launch.world_size);
            backend::cuda::prepare(_gpus > 1 || launched_world > 1)?;
        }
    }
    match cli.command {
        Command::Train {
            config,
            sets,
            out,
            resume,
            backend,
            devices,
        } => {
            lvface_train::stop_on_signals()
                .context("cannot install the SIGTERM and SIGINT handlers")?;
            let launch = lvface_pfc::Launch::from_env()?;
            if launch.is_some() && devices > 1 {
                bail!("--devices {devices} and a launch environment (RANK, WORLD_SIZE) were both given; a launched process is one rank");
            }
            // A launched run's new folder is made by rank 0 in `train_launched`, which tells
            // the other ranks when it refuses the folder, so that they all stop together.
            let mut new_run = None;
            let run_dir = match resume {
                Some(dir) => {
                    if !dir.join(lvface_train::CONFIG_FILE).is_file() {
                        bail!("{} is not a run folder (no config.toml)", dir.display());
                    }
                    dir
                }
                None => {
                    let experiment = config.map_or(Experiment::Default, Experiment::File);
                    let config = TrainConfig::load(&experiment, &sets)?;
                    let dir = match (&launch, out) {
                        (Some(launch), None) if launch.world_size > 1 => bail!(
                            "a launched run needs --out RUN_DIR on every rank (a folder all \
                             ranks can reach), so that they find one another's files"
                        ),
                        (_, out) => out.unwrap_or_else(|| fresh_run_dir(Path::new("."))),
                    };
                    if launch.is_some() {
                        new_run = Some(config);
                    } else {
                        create_run(&config, &dir)?;
                    }
                    dir
                }
            };
            println!("run folder: {}", run_dir.display());
            let devices = devices as usize;
            // Read from the run folder, so that a resumed run chooses as the run was created;
            // a new launched run's folder is made later, from the same configuration.
            let grad_checkpoint = match &new_run {
                Some(config) => config.vit.grad_checkpoint,
                None => {
                    TrainConfig::read_resolved(&run_dir.join(lvface_train::CONFIG_FILE))?
                        .vit
                        .grad_checkpoint
                }
            };
            if grad_checkpoint {
                println!("vit.grad_checkpoint: backward recomputes memory-bound ops");
            }
            let summary = backend::on_backend!(backend, |on| {
                with_autodiff!(on::Backend, grad_checkpoint, |B| match &launch {
                    Some(launch) => on::train_launched::<B>(
                        &run_dir,
                        new_run.as_ref(),
                        launch,
                        &on::device(launch.local_rank)?,
                    )?,
                    None => {
                        on::train_local::<B>(&run_dir, &on::rank_devices(devices)?, devices)?
                    }
                })
            });
            report_end(&summary, &run_dir);
            if summary.interrupted {
                // Flushed first: `exit` skips the destructors of stdout's buffer.
                std::io::stdout().flush()?;
                std::process::exit(lvface_train::STOPPED_EXIT_CODE);
            }
        }
        Command::Probe {
            model,
            batch,
            batches,
            backend,
            train_step,
            classes,
            warmup,
            steps,
            grad_checkpoint,
            compute_dtype,
        } => {
            let mut config = VitConfig::preset(&model)?;
            if let Some(on) = grad_checkpoint {
                config.grad_checkpoint = on;
            }
            config.compute_dtype = compute_dtype.into();
            if train_step {
                probe_train_step(&model, &config, batch, classes, warmup, steps, backend)?;
                return Ok(());
            }
            let report = backend::on_backend!(backend, |on| {
                probe::probe::<on::Backend>(&config, batch, batches, &on::device(0)?)?
            });
            println!(
                "model={model} backend={backend:?} params={:.2}M embedding={} batch={batch} images_per_s={:.1}",
                report.params as f64 / 1e6,
                report.embedding_dim,
                report.images_per_s
            );
        }
        Command::Parity(args) => {
            if !probe::parity(&args)? {
                std::io::stdout().flush()?;
                std::process::exit(1);
            }
        }
        Command::Eval(args) => eval::run(args)?,
        Command::Export(args) => deploy::export(args)?,
        Command::Import(args) => deploy::import(args)?,
        Command::Embed(args) => deploy::embed(args)?,
        Command::Verify(args) => deploy::verify(args)?,
        Command::Rehearse(args) => rehearse::run(args)?,
        Command::CudaEnv { all_reduce } => {
            backend::ensure_compiled(BackendKind::Cuda)?;
            #[cfg(feature = "cuda")]
            {
                if all_reduce.is_some() {
                    backend::cuda::prepare(true)?;
                }
                let findings = backend::cuda::this_machine();
                let (lines, ready) = backend::cuda_env::describe(&findings);
                for line in lines {
                    println!("{line}");
                }
                let versions = backend::cuda::versions(&findings);
                if !versions.is_empty() {
                    println!("versions {}", versions.join(", "));
                }
                if !ready {
                    std::io::stdout().flush()?;
                    std::process::exit(1);
                }
                if let Some(elements) = all_reduce {
                    println!("{}", backend::cuda::one_rank_all_reduce(elements)?);
                }
            }
            #[cfg(not(feature = "cuda"))]
            let _ = all_reduce;
        }
        Command::Data { command } => data::run(command)?,
    }
    Ok(())
}

/// `probe --train-step`: one key=value line with the step times.
fn probe_train_step(
    model: &str,
    config: &VitConfig,
    batch: usize,
    classes: usize,
    warmup: usize,
    steps: usize,
    backend: BackendKind,
) -> Result<()> {
    let timing = backend::on_backend!(backend, |on| {
        with_autodiff!(on::Backend, config.grad_checkpoint, |B| {
            probe::probe_train_step::<B>(config, batch, classes, warmup, steps, &on::device(0)?)?
        })
    });
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bench={model}/train_step_pfc backend={backend:?} params={:.2}M classes={classes} \
         sample_rate={} grad_checkpoint={} batch={batch} cpus={cpus} warmup={warmup} \
         steps={} median_ms={:.2} mean_ms={:.2} min_ms={:.2} images_per_s={:.2} loss={:.3}",
        timing.backbone_params as f64 / 1e6,
        timing.sample_rate,
        config.grad_checkpoint,
        timing.steps,
        timing.median_ms,
        timing.mean_ms,
        timing.min_ms,
        timing.images_per_s,
        timing.last_loss
    );
    Ok(())
}

fn report_end(summary: &RunSummary, run_dir: &Path) {
    if summary.finished {
        println!("finished after {} steps", summary.steps);
    } else if summary.interrupted {
        println!(
            "stopped after {} steps, as asked, with a checkpoint; continue with --resume {}",
            summary.steps,
            run_dir.display()
        );
    } else {
        println!(
            "stopped after {} steps; continue with --resume {}",
            summary.steps,
            run_dir.display()
        );
    }
    println!("run folder: {}", run_dir.display());
}
