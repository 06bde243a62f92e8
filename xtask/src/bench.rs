//! `cargo xtask bench`.

use anyhow::Result;

use crate::util::{cargo, run_checked};

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Only benchmarks whose name contains this (criterion's filter).
    filter: Option<String>,
}

/// Runs the criterion benches of the `lvface-bench` package.
pub fn run(args: Args) -> Result<()> {
    let mut command = cargo();
    command.args(["bench", "-p", "lvface-bench"]);
    if let Some(filter) = args.filter {
        command.args(["--", &filter]);
    }
    run_checked(command)
}
