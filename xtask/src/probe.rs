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
    #[arg(long, default_value_t = 3)]
    batches: usize,
    /// cpu (burn's Flex) or cuda (NVIDIA GPU).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    backend: String,
}

/// Builds `lvface-train` in release mode with the backend's feature and runs its `probe`.
pub fn run(args: Args) -> Result<()> {
    let mut command = lvface_train(&args.backend, "probe");
    command
        .args(["--model", &args.model, "--backend", &args.backend])
        .args([
            "--batch",
            &args.batch.to_string(),
            "--batches",
            &args.batches.to_string(),
        ]);
    run_checked(command)
}
