//! `cargo xtask eval`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::util::{cargo, lvface_train_args, run_checked};

/// Arguments of `cargo xtask eval`.
#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("source")
        .required(true)
        .args(["run", "weights", "embeddings"])
))]
pub struct Args {
    /// Run folder: its config.toml and the backbone of its latest checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    run: Option<PathBuf>,
    /// Backbone weights (.safetensors, .pt or .pth, insightface names) of the --model preset.
    #[arg(long, value_name = "FILE", requires = "model")]
    weights: Option<PathBuf>,
    /// Preset of --weights: vit_t, vit_s, vit_b, vit_l_dp005_mask_005, vit_h, ...
    #[arg(long, value_name = "PRESET", requires = "weights")]
    model: Option<String>,
    /// Embeddings computed elsewhere (.npy, float32 or float64): [2 x pairs, D] in the image
    /// order of --pairs, or [2 x 2 x pairs, D] with --flipped.
    #[arg(long, value_name = "EMB.npy", requires = "pairs")]
    embeddings: Option<PathBuf>,
    /// The .bin set the embeddings belong to (only its labels are read).
    #[arg(long, value_name = "SET.bin", requires = "embeddings")]
    pairs: Option<PathBuf>,
    /// The embeddings array holds the originals, then the mirrored images; they are summed.
    #[arg(long, requires = "embeddings")]
    flipped: bool,
    /// A .bin pair set (repeatable); default with --run and no --ijb: the sets the run
    /// verified on.
    #[arg(long = "bin", value_name = "SET.bin", conflicts_with = "embeddings")]
    bins: Vec<PathBuf>,
    /// An IJB-B/C folder (repeatable): a target such as IJBC/ (meta/ and loose_crop/ inside),
    /// or a folder holding IJBB/ and/or IJBC/; TAR@FAR of its template pairs.
    #[arg(long = "ijb", value_name = "IJB_DIR", conflicts_with = "embeddings")]
    ijbs: Vec<PathBuf>,
    /// Images embedded at once (default: the run's eval.batch_size, or 64).
    #[arg(long, conflicts_with = "embeddings",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch: Option<usize>,
    /// Report folder (default: RUN_DIR/eval with --run, ./eval-report otherwise).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// cpu (burn's Flex) or cuda (NVIDIA GPU).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"],
          conflicts_with = "embeddings")]
    backend: String,
}

/// Builds `lvface-train` in release mode and runs its `eval`. The embeddings mode needs no
/// backend; it runs in the CPU build, the one `cargo xtask train` and `probe` use by default.
pub fn run(args: Args) -> Result<()> {
    let cwd = std::env::current_dir().context("finding the current folder")?;
    let mut command = cargo();
    command.args(command_line(&args, &cwd));
    run_checked(command)
}

/// The arguments of `cargo`: paths made absolute against `cwd` (cargo runs in the workspace
/// root), and the report folder defaulting to `cwd/eval-report` without `--run`.
fn command_line(args: &Args, cwd: &Path) -> Vec<String> {
    let path = |p: &Path| cwd.join(p).display().to_string();
    let features = if args.embeddings.is_some() {
        "cpu"
    } else {
        args.backend.as_str()
    };
    let mut line = lvface_train_args(features, "eval");
    let mut flag = |name: &str, value: String| line.extend([name.to_string(), value]);
    if let Some(npy) = &args.embeddings {
        flag("--embeddings", path(npy));
    }
    if let Some(bin) = &args.pairs {
        flag("--pairs", path(bin));
    }
    if let Some(run) = &args.run {
        flag("--run", path(run));
    }
    if let Some(weights) = &args.weights {
        flag("--weights", path(weights));
    }
    if let Some(model) = &args.model {
        flag("--model", model.clone());
    }
    for bin in &args.bins {
        flag("--bin", path(bin));
    }
    for dir in &args.ijbs {
        flag("--ijb", path(dir));
    }
    if let Some(batch) = args.batch {
        flag("--batch", batch.to_string());
    }
    match (&args.out, &args.run) {
        (Some(out), _) => flag("--out", path(out)),
        (None, None) => flag("--out", path(Path::new("eval-report"))),
        (None, Some(_)) => {}
    }
    if args.embeddings.is_none() {
        flag("--backend", args.backend.clone());
    }
    if args.flipped {
        line.push("--flipped".into());
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn cargo_args(argv: &[&str]) -> Vec<String> {
        let cli = Cli::try_parse_from(std::iter::once("eval").chain(argv.iter().copied()))
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        command_line(&cli.args, Path::new("/work/here"))
    }

    fn tail(line: &[String]) -> Vec<&str> {
        let start = line.iter().position(|a| a == "eval").unwrap() + 1;
        line[start..].iter().map(String::as_str).collect()
    }

    #[test]
    fn embeddings_run_in_the_cpu_build_with_absolute_paths() {
        let line = cargo_args(&[
            "--embeddings",
            "e.npy",
            "--pairs",
            "/data/lfw.bin",
            "--flipped",
        ]);
        assert_eq!(
            line[..8],
            [
                "run",
                "--release",
                "--quiet",
                "-p",
                "lvface-train",
                "--no-default-features",
                "--features",
                "cpu"
            ]
        );
        assert_eq!(
            tail(&line),
            [
                "--embeddings",
                "/work/here/e.npy",
                "--pairs",
                "/data/lfw.bin",
                "--out",
                "/work/here/eval-report",
                "--flipped"
            ]
        );
    }

    #[test]
    fn runs_and_weights_pass_sets_backend_and_batch() {
        let line = cargo_args(&[
            "--run",
            "runs/r1",
            "--bin",
            "lfw.bin",
            "--bin",
            "/x/cfp_fp.bin",
            "--ijb",
            "ijb",
            "--backend",
            "cuda",
            "--batch",
            "32",
        ]);
        assert_eq!(line[7], "cuda");
        assert_eq!(
            tail(&line),
            [
                "--run",
                "/work/here/runs/r1",
                "--bin",
                "/work/here/lfw.bin",
                "--bin",
                "/x/cfp_fp.bin",
                "--ijb",
                "/work/here/ijb",
                "--batch",
                "32",
                "--backend",
                "cuda"
            ]
        );
        let line = cargo_args(&[
            "--weights",
            "w.pt",
            "--model",
            "vit_b",
            "--bin",
            "a.bin",
            "--out",
            "r",
        ]);
        assert_eq!(
            tail(&line),
            [
                "--weights",
                "/work/here/w.pt",
                "--model",
                "vit_b",
                "--bin",
                "/work/here/a.bin",
                "--out",
                "/work/here/r",
                "--backend",
                "cpu"
            ]
        );
    }

    #[test]
    fn contradictory_or_incomplete_sources_are_refused() {
        let cases: [&[&str]; 10] = [
            &[],
            &["--weights", "w.pt"],
            &["--embeddings", "e.npy"],
            &["--run", "r", "--weights", "w.pt", "--model", "vit_t"],
            &[
                "--embeddings",
                "e.npy",
                "--pairs",
                "p.bin",
                "--bin",
                "a.bin",
            ],
            &[
                "--embeddings",
                "e.npy",
                "--pairs",
                "p.bin",
                "--backend",
                "cuda",
            ],
            &["--run", "r", "--flipped"],
            &["--embeddings", "e.npy", "--pairs", "p.bin", "--ijb", "IJBC"],
            &["--run", "r", "--backend", "tpu"],
            &["--run", "r", "--batch", "0"],
        ];
        for argv in cases {
            let parsed = Cli::try_parse_from(std::iter::once("eval").chain(argv.iter().copied()));
            assert!(parsed.is_err(), "{argv:?} was accepted");
        }
    }
}
