//! `cargo xtask data`: inspect, pack and synth run in `lvface-train data` (the CPU release
//! build), because lvface-data depends on burn and xtask does not.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::util::{cargo, lvface_train_args, run_checked};

/// Subcommands of `cargo xtask data`.
#[derive(clap::Subcommand, Debug)]
pub enum Args {
    /// A RecordIO folder or .rec file: `images=N identities=C size=HxW`; a .bin pair set:
    /// `pairs=N same=S`.
    Inspect {
        /// A folder holding train.rec (and train.idx, property), a .rec file, or a .bin file.
        path: PathBuf,
    },
    /// Pack an image folder (one sub-folder per identity) into OUT_DIR/train.rec, train.idx,
    /// property and labels.tsv, checking that every image decodes.
    Pack {
        /// One sub-folder per identity, .jpg/.jpeg/.png images in each.
        folder: PathBuf,
        /// A new or empty folder.
        out_dir: PathBuf,
    },
    /// Render synthetic identities into OUT_DIR (RecordIO, or folders under OUT_DIR/images)
    /// and verification pairs of held-out identities (OUT_DIR/synthetic_pairs.bin, and the same
    /// pairs with a masked second image in OUT_DIR/synthetic_masked_pairs.bin).
    Synth {
        /// A new or empty folder.
        out_dir: PathBuf,
        /// Training identities (default 100).
        #[arg(long, value_name = "N")]
        ids: Option<String>,
        /// Images per training identity (default 20).
        #[arg(long, value_name = "K")]
        per_id: Option<String>,
        /// Held-out identities the verification pairs show (default 20).
        #[arg(long, value_name = "N")]
        held_out: Option<String>,
        /// Verification pairs (default 200; 0 writes no .bin).
        #[arg(long, value_name = "N")]
        pairs: Option<String>,
        /// Seed of everything (default 0).
        #[arg(long)]
        seed: Option<String>,
        /// Side of the square images (default 112).
        #[arg(long, value_name = "PX")]
        size: Option<String>,
        /// Per-image nuisance strength (default 1; 0 = one fixed image per identity).
        #[arg(long)]
        nuisance: Option<String>,
        /// rec (default) or folders.
        #[arg(long, value_parser = ["rec", "folders"])]
        format: Option<String>,
        /// Store PNG instead of JPEG.
        #[arg(long)]
        png: bool,
    },
}

/// Builds `lvface-train` (CPU, release) and runs its `data` subcommand.
pub fn run(args: Args) -> Result<()> {
    let cwd = std::env::current_dir().context("finding the current folder")?;
    let mut command = cargo();
    command.args(command_line(&args, &cwd));
    run_checked(command)
}

/// The arguments of `cargo`, with paths made absolute against `cwd` (cargo runs in the
/// workspace root).
fn command_line(args: &Args, cwd: &Path) -> Vec<String> {
    let path = |p: &Path| cwd.join(p).display().to_string();
    let mut line = lvface_train_args("cpu", "data");
    match args {
        Args::Inspect { path: p } => line.extend(["inspect".into(), path(p)]),
        Args::Pack { folder, out_dir } => {
            line.extend(["pack".into(), path(folder), path(out_dir)]);
        }
        Args::Synth {
            out_dir,
            ids,
            per_id,
            held_out,
            pairs,
            seed,
            size,
            nuisance,
            format,
            png,
        } => {
            line.extend(["synth".into(), path(out_dir)]);
            for (flag, value) in [
                ("--ids", ids),
                ("--per-id", per_id),
                ("--held-out", held_out),
                ("--pairs", pairs),
                ("--seed", seed),
                ("--size", size),
                ("--nuisance", nuisance),
                ("--format", format),
            ] {
                if let Some(value) = value {
                    line.extend([flag.to_string(), value.clone()]);
                }
            }
            if *png {
                line.push("--png".into());
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        args: Args,
    }

    fn tail(argv: &[&str]) -> Vec<String> {
        let cli = Cli::try_parse_from(std::iter::once("data").chain(argv.iter().copied()))
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let line = command_line(&cli.args, Path::new("/work/here"));
        assert_eq!(
            line[..8].join(" "),
            "run --release --quiet -p lvface-train --no-default-features --features cpu"
        );
        let start = line.iter().position(|a| a == "data").unwrap() + 1;
        line[start..].to_vec()
    }

    #[test]
    fn paths_are_absolute_and_options_pass_through() {
        assert_eq!(
            tail(&["inspect", "d/train.rec"]),
            ["inspect", "/work/here/d/train.rec"]
        );
        assert_eq!(
            tail(&["pack", "faces", "/out"]),
            ["pack", "/work/here/faces", "/out"]
        );
        assert_eq!(
            tail(&["synth", "s", "--ids", "5", "--per-id", "3", "--format", "folders", "--png"]),
            [
                "synth",
                "/work/here/s",
                "--ids",
                "5",
                "--per-id",
                "3",
                "--format",
                "folders",
                "--png"
            ]
        );
    }

    #[test]
    fn missing_paths_and_unknown_formats_are_refused() {
        for argv in [
            &["pack", "faces"][..],
            &["synth"],
            &["synth", "s", "--format", "zip"],
            &["inspect"],
        ] {
            let parsed = Cli::try_parse_from(std::iter::once("data").chain(argv.iter().copied()));
            assert!(parsed.is_err(), "{argv:?} was accepted");
        }
    }
}
