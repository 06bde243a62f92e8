//! Helpers shared by the tasks.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root, whatever folder `cargo xtask` was started from.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask should live one level below the workspace root")
        .to_path_buf()
}

/// `cargo` as the user invoked it (rustup's proxy sets `CARGO`).
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(project_root());
    command
}

/// `cargo run --release -p lvface-train` built with the backend's feature (`cpu` or `cuda`),
/// ready for the arguments of `subcommand`.
pub fn lvface_train(features: &str, subcommand: &str) -> Command {
    let mut command = cargo();
    command.args(lvface_train_args(features, subcommand));
    command
}

/// The cargo arguments behind [`lvface_train`].
pub fn lvface_train_args(features: &str, subcommand: &str) -> Vec<String> {
    [
        "run",
        "--release",
        "--quiet",
        "-p",
        "lvface-train",
        "--no-default-features",
        "--features",
        features,
        "--",
        subcommand,
    ]
    .map(String::from)
    .to_vec()
}

/// Runs `command`, failing with its exit status when it fails.
pub fn run_checked(mut command: Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}
