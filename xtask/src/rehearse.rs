//! `cargo xtask rehearse`: runs `lvface-train rehearse` (see its `--help`) with the arguments as
//! given, from the caller's folder, so relative paths mean what they say.

use anyhow::{Context, Result};

use crate::util::{cargo, lvface_train_args, project_root, run_checked};

/// Arguments of `cargo xtask rehearse`: passed on untouched.
#[derive(clap::Args)]
pub struct Args {
    /// `--config RECIPE --classes N --out DIR [--ranks W] [--resume-ranks W] ...`
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Builds `lvface-train` in release mode on the CPU backend and runs its `rehearse`.
pub fn run(args: Args) -> Result<()> {
    let mut command = cargo();
    let manifest = project_root().join("Cargo.toml");
    let mut cargo_args = lvface_train_args("cpu", "rehearse");
    // `cargo run -p` from the caller's folder needs the workspace's manifest.
    cargo_args.insert(1, format!("--manifest-path={}", manifest.display()));
    command
        .args(cargo_args)
        .args(&args.args)
        .current_dir(std::env::current_dir().context("reading the current folder")?);
    run_checked(command)
}
