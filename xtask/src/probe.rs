//! `cargo xtask probe`.

use anyhow::Result;

use crate::util::{lvface_train, run_checked};

/// Arguments of `cargo xtask probe`.
#[derive(clap::Args)]
pub struct Args {
    /// insightface model name: vit_t, vit_s, vit_b, vit_l_dp005_mask_005, vit_h, ...
    #[arg(long, default_value = "vit_t")]
    model: String,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed batches.
    #[arg(long, default_value_t = 3, conflicts_with = "train_step")]
    batches: usize,
    /// cpu (burn's Flex) or cuda (NVIDIA GPU).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    backend: String,
    /// Time whole training steps (forward, Partial FC margin softmax, backward, clipping,
    /// AdamW) instead of embedding batches.
    #[arg(long)]
    train_step: bool,
    /// Classes of the centre matrix (with --train-step; default 10000).
    #[arg(long, requires = "train_step")]
    classes: Option<usize>,
    /// Untimed steps first (with --train-step; default 3).
    #[arg(long, requires = "train_step")]
    warmup: Option<usize>,
    /// Timed steps (with --train-step; default 10).
    #[arg(long, requires = "train_step")]
    steps: Option<usize>,
    /// Train with gradient checkpointing or without, whatever the model's preset says (with
    /// --train-step; the presets from vit_b up turn it on).
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set, requires = "train_step")]
    grad_checkpoint: Option<bool>,
}

/// Builds `lvface-train` in release mode with the backend's feature and runs its `probe`.
pub fn run(args: Args) -> Result<()> {
    let mut command = lvface_train(&args.backend, "probe");
    command
        .args(["--model", &args.model, "--backend", &args.backend])
        .args(["--batch", &args.batch.to_string()]);
    if args.train_step {
        command.arg("--train-step");
        for (flag, value) in [
            ("--classes", args.classes),
            ("--warmup", args.warmup),
            ("--steps", args.steps),
        ] {
            if let Some(value) = value {
                command.args([flag, &value.to_string()]);
            }
        }
        if let Some(on) = args.grad_checkpoint {
            command.args(["--grad-checkpoint", &on.to_string()]);
        }
    } else {
        command.args(["--batches", &args.batches.to_string()]);
    }
    run_checked(command)
}
