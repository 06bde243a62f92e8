//! `eval`: a run's latest checkpoint, a weights file, or embeddings computed elsewhere, on
//! `.bin` pair sets and IJB-B/C folders. stdout gets one machine-readable line per set
//! (lvface-eval's `machine_line` for a `.bin` set, `tar_line` for an IJB target) and nothing else; progress goes to stderr. The report folder gets
//! `report.json`, `report.md` and a ROC plot per set.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use clap::builder::RangedU64ValueParser;
use lvface_eval::{machine_line, tar_line, write_report_dir, PairSetResult, VerificationConfig};
use lvface_train::{
    evaluate_bin, evaluate_embeddings_file, evaluate_ijb_target, ijb_targets, set_name, EvalModel,
    ModelSource,
};

use crate::backend::{self, BackendKind};

/// Arguments of `eval`.
#[derive(clap::Args)]
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
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    batch: Option<usize>,
    /// Report folder (default: RUN_DIR/eval with --run, ./eval-report otherwise).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Where to embed.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu, conflicts_with = "embeddings")]
    backend: BackendKind,
}

impl Args {
    /// The backend the backbone runs on; none when the embeddings were computed elsewhere.
    pub fn backend(&self) -> Option<BackendKind> {
        self.embeddings.is_none().then_some(self.backend)
    }
}

/// Runs `eval`.
pub fn run(args: Args) -> Result<()> {
    let (source, results) = match &args.embeddings {
        Some(npy) => {
            let bin = args
                .pairs
                .as_deref()
                .context("--embeddings needs --pairs SET.bin")?;
            let result =
                evaluate_embeddings_file(npy, bin, args.flipped, &VerificationConfig::default())?;
            print_line(&result);
            (npy.display().to_string(), vec![result])
        }
        None => evaluate_model(&args)?,
    };
    let out = match (&args.out, &args.run) {
        (Some(out), _) => out.clone(),
        (None, Some(run)) => run.join("eval"),
        (None, None) => PathBuf::from("eval-report"),
    };
    write_report_dir(&out, &source, &results)?;
    eprintln!("report: {}", out.join("report.md").display());
    Ok(())
}

/// Embeds and evaluates every set with the backbone of `--run` or `--weights`.
fn evaluate_model(args: &Args) -> Result<(String, Vec<PairSetResult>)> {
    let source = match (&args.run, &args.weights, &args.model) {
        (Some(dir), _, _) => ModelSource::Run(dir.clone()),
        (None, Some(path), Some(preset)) => ModelSource::Weights {
            path: path.clone(),
            preset: preset.clone(),
        },
        _ => bail!("give --run RUN_DIR, or --weights FILE with --model PRESET"),
    };
    let mut model = EvalModel::resolve(&source)?;
    if let Some(batch) = args.batch {
        model.batch_size = batch;
    }
    let sets: Vec<(String, PathBuf)> = if args.bins.is_empty() && args.ijbs.is_empty() {
        model.run_sets.clone()
    } else {
        args.bins.iter().map(|p| (set_name(p), p.clone())).collect()
    };
    let mut ijb = Vec::new();
    for dir in &args.ijbs {
        ijb.extend(ijb_targets(dir)?);
    }
    if sets.is_empty() && ijb.is_empty() {
        match source {
            ModelSource::Run(_) => bail!(
                "the run verified on no pair set (no eval.bins, no synthetic pairs); give --bin \
                 SET.bin"
            ),
            ModelSource::Weights { .. } => {
                bail!("--weights needs at least one --bin SET.bin or --ijb IJB_DIR")
            }
        }
    }
    for (_, path) in &sets {
        if !path.is_file() {
            bail!("pair set {} does not exist", path.display());
        }
    }
    let results = backend::on_backend!(args.backend, |on| {
        evaluate_sets::<on::Backend>(&model, &sets, &ijb, &on::device(0)?)?
    });
    Ok((model.source, results))
}

fn evaluate_sets<B: Backend>(
    model: &EvalModel,
    sets: &[(String, PathBuf)],
    ijb: &[(PathBuf, String)],
    device: &B::Device,
) -> Result<Vec<PairSetResult>> {
    eprintln!("evaluating {}", model.source);
    let backbone = model.load::<B>(device)?;
    let mut results = Vec::with_capacity(sets.len());
    for (name, path) in sets {
        eprintln!(
            "embedding {name} ({}) at {} px, flipped too, {} images at a time",
            path.display(),
            model.vit.image_size,
            model.batch_size
        );
        let result = evaluate_bin(&backbone, model, name, Path::new(path), device)?;
        print_line(&result);
        results.push(result);
    }
    for (root, target) in ijb {
        eprintln!(
            "embedding {target} ({}): faces aligned to 112 px, at {} px, flipped too, {} at a \
             time",
            root.join(target).display(),
            model.vit.image_size,
            model.batch_size
        );
        let result = evaluate_ijb_target(&backbone, model, root, target, device)?;
        print_line(&result);
        results.push(result);
    }
    Ok(results)
}

/// The 10-fold line of a `.bin` set, or the TAR@FAR line of an IJB target.
fn print_line(result: &PairSetResult) {
    let name = &result.report.name;
    match (&result.report.verification, &result.report.tar_far) {
        (Some(figures), _) => println!("{}", machine_line(name, figures)),
        (None, Some(tar)) => println!("{}", tar_line(name, tar)),
        (None, None) => {}
    }
}
