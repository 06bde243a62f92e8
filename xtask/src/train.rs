//! `cargo xtask train`.

use anyhow::Result;

use crate::util::{lvface_train, run_checked};

/// Arguments of `cargo xtask train`.
#[derive(clap::Args)]
pub struct Args {
    /// Experiment file layered over configs/base.toml (default: the built-in CPU demo,
    /// configs/default.toml).
    #[arg(long)]
    config: Option<String>,
    /// Override one key, e.g. `--set optim.lr=5e-4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Run folder (default: a fresh folder under runs/, printed at the start and the end).
    #[arg(long, conflicts_with = "resume")]
    out: Option<String>,
    /// Continue the run in this folder from its latest checkpoint.
    #[arg(long, conflicts_with_all = ["config", "sets"])]
    resume: Option<String>,
    /// cpu (burn's Flex) or cuda (NVIDIA GPU).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    backend: String,
    /// Ranks in this process: the backbone data parallel, the classifier sharded (GPU r for
    /// rank r on cuda). Under a torchrun-style launch each process is one rank instead; see
    /// docs/distributed.md.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    devices: u64,
}

/// Builds `lvface-train` in release mode with the backend's feature and runs its `train`.
pub fn run(args: Args) -> Result<()> {
    let mut command = lvface_train(&args.backend, "train");
    command.args(["--backend", &args.backend]);
    command.args(["--devices", &args.devices.to_string()]);
    for (flag, value) in [
        ("--config", &args.config),
        ("--out", &args.out),
        ("--resume", &args.resume),
    ] {
        if let Some(value) = value {
            command.args([flag, value]);
        }
    }
    for set in &args.sets {
        command.args(["--set", set]);
    }
    run_checked(command)
}
