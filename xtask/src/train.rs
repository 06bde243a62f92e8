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
}

/// Builds `lvface-train` in release mode with the backend's feature and runs its `train`.
pub fn run(args: Args) -> Result<()> {
    let mut command = lvface_train(&args.backend, "train");
    command.args(["--backend", &args.backend]);
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
