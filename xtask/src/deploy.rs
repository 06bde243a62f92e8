//! `cargo xtask export | import | embed | verify`: thin wrappers that build `lvface-train` in
//! release mode and pass the arguments on, with paths made absolute (cargo runs in the
//! workspace root). The four share the model options, so they share this file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::util::{cargo, lvface_train_args, run_checked};

/// Where the backbone comes from.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["run", "weights"])))]
pub struct ModelArgs {
    /// Run folder: its config.toml and the backbone of its latest checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    run: Option<PathBuf>,
    /// Backbone weights (.safetensors, .pt or .pth, insightface names).
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Preset of --weights (vit_t, vit_s, vit_b, ...); default: inferred from the tensor shapes.
    #[arg(long, value_name = "PRESET", requires = "weights")]
    model: Option<String>,
}

/// Arguments of `cargo xtask export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The ONNX file to write.
    #[arg(long, value_name = "FILE.onnx")]
    out: PathBuf,
    /// ONNX opset (17 to 21).
    #[arg(long, default_value_t = 17)]
    opset: i64,
}

/// Arguments of `cargo xtask import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// insightface / LVFace backbone (.pt/.pth state dict, bare or under state_dict/model).
    #[arg(long, value_name = "FILE")]
    pt: PathBuf,
    /// The preset it is; default: inferred from the tensor shapes.
    #[arg(long, value_name = "PRESET")]
    model: Option<String>,
    /// lvface weights file to write (default: the input's name with .safetensors, here).
    #[arg(long, value_name = "FILE.safetensors")]
    out: Option<PathBuf>,
}

/// Arguments of `cargo xtask embed`.
#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Aligned face crops (JPEG or PNG), normally 112x112; other sizes are resized.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// The .npy file to write: [images, embedding] float32.
    #[arg(long, value_name = "EMB.npy", default_value = "emb.npy")]
    out: PathBuf,
    /// Add the embedding of the mirrored image.
    #[arg(long)]
    flip: bool,
    /// L2-normalise each embedding.
    #[arg(long)]
    normalize: bool,
    /// Images per forward pass.
    #[arg(long)]
    batch: Option<usize>,
    /// cpu (burn's Flex) or cuda (NVIDIA GPU).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    backend: String,
}

/// Arguments of `cargo xtask verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// First face.
    a: PathBuf,
    /// Second face.
    b: PathBuf,
    /// Accept "same person" at or above this cosine (default: the FAR 1e-4 threshold of the
    /// run's last evaluation).
    #[arg(long)]
    threshold: Option<f64>,
    /// Evaluation report (report.json) to take the FAR 1e-4 threshold from.
    #[arg(long, value_name = "REPORT.json", conflicts_with = "threshold")]
    report: Option<PathBuf>,
    /// Compare plain instead of flip-summed embeddings.
    #[arg(long)]
    no_flip: bool,
    /// cpu (burn's Flex) or cuda (NVIDIA GPU).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    backend: String,
}

/// One of the four tasks.
pub enum Deploy {
    /// `export`.
    Export(ExportArgs),
    /// `import`.
    Import(ImportArgs),
    /// `embed`.
    Embed(EmbedArgs),
    /// `verify`.
    Verify(VerifyArgs),
}

/// Builds `lvface-train` and runs the task.
pub fn run(task: Deploy) -> Result<()> {
    let cwd = std::env::current_dir().context("finding the current folder")?;
    let mut command = cargo();
    command.args(command_line(&task, &cwd));
    run_checked(command)
}

fn command_line(task: &Deploy, cwd: &Path) -> Vec<String> {
    let path = |p: &Path| cwd.join(p).display().to_string();
    let (features, subcommand) = match task {
        Deploy::Export(_) => ("cpu", "export"),
        Deploy::Import(_) => ("cpu", "import"),
        Deploy::Embed(a) => (a.backend.as_str(), "embed"),
        Deploy::Verify(a) => (a.backend.as_str(), "verify"),
    };
    let mut line = lvface_train_args(features, subcommand);
    let mut flag = |name: &str, value: String| line.extend([name.to_string(), value]);
    let model = match task {
        Deploy::Export(a) => Some(&a.model),
        Deploy::Embed(a) => Some(&a.model),
        Deploy::Verify(a) => Some(&a.model),
        Deploy::Import(_) => None,
    };
    if let Some(m) = model {
        if let Some(run) = &m.run {
            flag("--run", path(run));
        }
        if let Some(weights) = &m.weights {
            flag("--weights", path(weights));
        }
        if let Some(preset) = &m.model {
            flag("--model", preset.clone());
        }
    }
    match task {
        Deploy::Export(a) => {
            flag("--out", path(&a.out));
            flag("--opset", a.opset.to_string());
        }
        Deploy::Import(a) => {
            flag("--pt", path(&a.pt));
            if let Some(preset) = &a.model {
                flag("--model", preset.clone());
            }
            // The binary's default is relative to its own folder; make it this one.
            let out = a.out.clone().unwrap_or_else(|| {
                PathBuf::from(a.pt.file_stem().unwrap_or_default()).with_extension("safetensors")
            });
            flag("--out", path(&out));
        }
        Deploy::Embed(a) => {
            flag("--out", path(&a.out));
            if let Some(batch) = a.batch {
                flag("--batch", batch.to_string());
            }
            flag("--backend", a.backend.clone());
            if a.flip {
                line.push("--flip".into());
            }
            if a.normalize {
                line.push("--normalize".into());
            }
            line.push("--".into());
            line.extend(a.images.iter().map(|p| path(p)));
        }
        Deploy::Verify(a) => {
            if let Some(t) = a.threshold {
                flag("--threshold", t.to_string());
            }
            if let Some(report) = &a.report {
                flag("--report", path(report));
            }
            flag("--backend", a.backend.clone());
            if a.no_flip {
                line.push("--no-flip".into());
            }
            line.push("--".into());
            line.extend([path(&a.a), path(&a.b)]);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    enum Cli {
        Export(ExportArgs),
        Import(ImportArgs),
        Embed(EmbedArgs),
        Verify(VerifyArgs),
    }

    fn line(argv: &[&str]) -> Vec<String> {
        let task = match Cli::try_parse_from(std::iter::once("xtask").chain(argv.iter().copied()))
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
        {
            Cli::Export(a) => Deploy::Export(a),
            Cli::Import(a) => Deploy::Import(a),
            Cli::Embed(a) => Deploy::Embed(a),
            Cli::Verify(a) => Deploy::Verify(a),
        };
        command_line(&task, Path::new("/w"))
    }

    fn tail(line: &[String]) -> Vec<&str> {
        line[9..].iter().map(String::as_str).collect()
    }

    #[test]
    fn paths_become_absolute_and_backends_pick_the_build() {
        let l = line(&["export", "--run", "runs/r", "--out", "m.onnx"]);
        assert_eq!(l[7], "cpu");
        assert_eq!(
            tail(&l),
            [
                "export",
                "--run",
                "/w/runs/r",
                "--out",
                "/w/m.onnx",
                "--opset",
                "17"
            ]
        );
        let l = line(&["import", "--pt", "/m/model.pt"]);
        assert_eq!(
            tail(&l),
            [
                "import",
                "--pt",
                "/m/model.pt",
                "--out",
                "/w/model.safetensors"
            ]
        );
        let l = line(&[
            "embed",
            "--weights",
            "w.pt",
            "--model",
            "vit_t",
            "a.jpg",
            "b.png",
            "--flip",
            "--backend",
            "cuda",
        ]);
        assert_eq!(l[7], "cuda");
        assert_eq!(
            tail(&l),
            [
                "embed",
                "--weights",
                "/w/w.pt",
                "--model",
                "vit_t",
                "--out",
                "/w/emb.npy",
                "--backend",
                "cuda",
                "--flip",
                "--",
                "/w/a.jpg",
                "/w/b.png"
            ]
        );
        let l = line(&[
            "verify",
            "--run",
            "r",
            "a.jpg",
            "b.jpg",
            "--threshold",
            "0.3",
        ]);
        assert_eq!(
            tail(&l),
            [
                "verify",
                "--run",
                "/w/r",
                "--threshold",
                "0.3",
                "--backend",
                "cpu",
                "--",
                "/w/a.jpg",
                "/w/b.jpg"
            ]
        );
    }

    #[test]
    fn incomplete_sources_are_refused() {
        let cases: [&[&str]; 4] = [
            &["export", "--out", "m.onnx"],
            &["embed", "--run", "r"],
            &["verify", "--run", "r", "a.jpg"],
            &["verify", "--model", "vit_t", "a.jpg", "b.jpg"],
        ];
        for argv in cases {
            let parsed = Cli::try_parse_from(std::iter::once("xtask").chain(argv.iter().copied()));
            assert!(parsed.is_err(), "{argv:?} was accepted");
        }
    }
}
