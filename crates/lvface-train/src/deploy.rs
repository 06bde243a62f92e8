//! `export`, `import`, `embed` and `verify`: a backbone leaving lvface (ONNX), entering it
//! (insightface / LVFace `.pt`), and used on face images. Results go to stdout; warnings and
//! progress to stderr.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use lvface_export::{check_mfr, infer_config, MfrLimits, DEFAULT_OPSET};
use lvface_train::{
    cosine, embed_faces, read_face, threshold_from_report, write_npy, EmbedOptions, EvalModel,
    ModelSource, DEFAULT_EVAL_BATCH,
};
use lvface_vit::VitConfig;

use crate::backend::{self, BackendKind};

/// FAR of the threshold `verify` takes from an evaluation report.
const VERIFY_FAR: f64 = 1e-4;

/// Where the backbone comes from (shared by export, embed and verify).
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

/// A backbone to load: architecture, weights file, and the run it belongs to.
struct Backbone {
    config: VitConfig,
    weights: PathBuf,
    source: String,
    run: Option<PathBuf>,
}

impl ModelArgs {
    fn resolve(&self) -> Result<Backbone> {
        match (&self.run, &self.weights) {
            (Some(dir), _) => {
                let model = EvalModel::resolve(&ModelSource::Run(dir.clone()))?;
                Ok(Backbone {
                    config: model.vit,
                    weights: model.weights,
                    source: model.source,
                    run: Some(dir.clone()),
                })
            }
            (None, Some(path)) => {
                if !path.is_file() {
                    bail!("weights file {} does not exist", path.display());
                }
                let (config, name) = match &self.model {
                    Some(preset) => (VitConfig::preset(preset)?, preset.clone()),
                    None => {
                        let inferred = infer_config(path)?;
                        let name = inferred.preset.map_or_else(
                            || describe(&inferred.config),
                            |p| format!("{p}, inferred"),
                        );
                        (inferred.config, name)
                    }
                };
                Ok(Backbone {
                    config,
                    weights: path.clone(),
                    source: format!("{} ({name})", path.display()),
                    run: None,
                })
            }
            (None, None) => bail!("give --run RUN_DIR or --weights FILE"),
        }
    }
}

impl Backbone {
    fn load<B: Backend>(&self, device: &B::Device) -> Result<lvface_vit::Vit<B>> {
        self.config.check_device::<B>(device)?;
        self.config
            .init::<B>(device)
            .load_weights(&self.weights)
            .with_context(|| format!("loading the backbone of {}", self.source))
    }
}

fn describe(c: &VitConfig) -> String {
    format!(
        "inferred: width {}, depth {}, patch {}, {} heads assumed, {}-d",
        c.embed_dim, c.depth, c.patch_size, c.num_heads, c.num_features
    )
}

/// Arguments of `export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The ONNX file to write.
    #[arg(long, value_name = "FILE.onnx")]
    out: PathBuf,
    /// ONNX opset (17 to 21).
    #[arg(long, default_value_t = DEFAULT_OPSET)]
    opset: i64,
}

/// Writes the backbone as ONNX and checks it against the MFR checker's structural rules.
pub fn export(args: ExportArgs) -> Result<()> {
    let backbone = args.model.resolve()?;
    eprintln!("exporting {}", backbone.source);
    let bytes = export_bytes(&backbone, args.opset)?;
    let report = check_mfr(&bytes, &MfrLimits::CFAT)?;
    let mut tmp = args.out.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    std::fs::rename(&tmp, &args.out).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} opset={} size_mb={:.2} nodes={} initializers={} parameters={} input=[N,3,{s},{s}] output=[N,{}] mfr_structure=pass",
        args.out.display(),
        args.opset,
        report.size_bytes as f64 / (1024.0 * 1024.0),
        report.nodes,
        report.initializers,
        report.initializer_elements,
        report.feature_dim,
        s = backbone.config.image_size,
    );
    Ok(())
}

/// Arguments of `import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// insightface / LVFace backbone: a state dict (bare, under `state_dict` or `model`, with or
    /// without DDP's `module.` prefix) in .pt/.pth, or .safetensors.
    #[arg(long, value_name = "FILE")]
    pt: PathBuf,
    /// The preset it is; default: inferred from the tensor shapes.
    #[arg(long, value_name = "PRESET")]
    model: Option<String>,
    /// lvface weights file to write (default: the input's name with .safetensors, in the current
    /// folder).
    #[arg(long, value_name = "FILE.safetensors")]
    out: Option<PathBuf>,
}

/// Checks every key and shape of a PyTorch backbone and writes it as lvface weights.
pub fn import(args: ImportArgs) -> Result<()> {
    let (config, name) = match &args.model {
        Some(preset) => (VitConfig::preset(preset)?, preset.clone()),
        None => {
            let inferred = infer_config(&args.pt)?;
            let name = inferred
                .preset
                .map_or_else(|| describe(&inferred.config), str::to_string);
            (inferred.config, name)
        }
    };
    let out = match &args.out {
        Some(out) => out.clone(),
        None => {
            let stem = args.pt.file_stem().context("the input has no file name")?;
            PathBuf::from(stem).with_extension("safetensors")
        }
    };
    if out == args.pt {
        bail!("--out would overwrite the input {}", args.pt.display());
    }
    import_on_cpu(&args.pt, &out, &config)?;
    let model_flag = args.model.clone().or_else(|| {
        VitConfig::PRESETS
            .into_iter()
            .find(|p| *p == name)
            .map(String::from)
    });
    println!(
        "wrote {} model={name} params={:.2}M",
        out.display(),
        trainable_params(&config) as f64 / 1e6
    );
    match model_flag {
        Some(preset) => eprintln!("use it with --weights {} --model {preset}", out.display()),
        None => eprintln!(
            "no insightface preset has these shapes; --weights {} alone infers them again",
            out.display()
        ),
    }
    Ok(())
}

/// Arguments of `embed`.
#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Aligned face crops (JPEG or PNG), normally 112x112; other sizes are resized.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// The .npy file to write: [images, embedding] float32, in the order given.
    #[arg(long, value_name = "EMB.npy", default_value = "emb.npy")]
    out: PathBuf,
    /// Add the embedding of the mirrored image (insightface's evaluation protocol).
    #[arg(long)]
    flip: bool,
    /// L2-normalise each embedding (default: the raw backbone output).
    #[arg(long)]
    normalize: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = DEFAULT_EVAL_BATCH,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    batch: usize,
    /// Where to embed.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
}

/// Embeds face images into an .npy file.
pub fn embed(args: EmbedArgs) -> Result<()> {
    let backbone = args.model.resolve()?;
    let options = EmbedOptions {
        flip: args.flip,
        normalize: args.normalize,
        batch_size: args.batch,
    };
    let (rows, dim) = embed_paths(&backbone, &args.images, &options, args.backend)?;
    write_npy(&args.out, &rows, args.images.len(), dim)?;
    println!(
        "wrote {} [{}, {dim}] flip={} normalize={}",
        args.out.display(),
        args.images.len(),
        args.flip,
        args.normalize
    );
    Ok(())
}

/// Arguments of `verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// First face (aligned crop, JPEG or PNG).
    a: PathBuf,
    /// Second face.
    b: PathBuf,
    /// Accept "same person" at or above this cosine similarity (default: the threshold at FAR
    /// 1e-4 of the run's last evaluation, RUN_DIR/eval/report.json).
    #[arg(long)]
    threshold: Option<f64>,
    /// Evaluation report to take the FAR 1e-4 threshold from (report.json of `cargo xtask eval`).
    #[arg(long, value_name = "REPORT.json", conflicts_with = "threshold")]
    report: Option<PathBuf>,
    /// Compare the plain embeddings instead of the flip-summed ones the evaluation thresholds
    /// were measured on.
    #[arg(long)]
    no_flip: bool,
    /// Where to embed.
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
}

/// Prints the cosine similarity of two faces and the same/different decision.
pub fn verify(args: VerifyArgs) -> Result<()> {
    let backbone = args.model.resolve()?;
    let threshold = match (args.threshold, &args.report, &backbone.run) {
        (Some(t), _, _) => Some((t, "given".to_string())),
        (None, Some(report), _) => report_threshold(report)?,
        (None, None, Some(run)) => {
            let report = run.join("eval").join("report.json");
            if report.is_file() {
                report_threshold(&report)?
            } else {
                None
            }
        }
        (None, None, None) => None,
    };
    let options = EmbedOptions {
        flip: !args.no_flip,
        normalize: false,
        batch_size: 2,
    };
    let paths = [args.a.clone(), args.b.clone()];
    let (rows, dim) = embed_paths(&backbone, &paths, &options, args.backend)?;
    let similarity = cosine(&rows[..dim], &rows[dim..]);
    match threshold {
        Some((t, origin)) => println!(
            "cosine={similarity:.4} threshold={t:.4} ({origin}) decision={}",
            if similarity >= t { "same" } else { "different" }
        ),
        None => {
            println!("cosine={similarity:.4} threshold=none decision=unknown");
            eprintln!(
                "no threshold: give --threshold T, --report REPORT.json, or evaluate the run first \
                 (cargo xtask eval --run RUN_DIR)"
            );
        }
    }
    Ok(())
}

fn report_threshold(path: &Path) -> Result<Option<(f64, String)>> {
    let found = threshold_from_report(path, VERIFY_FAR)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(found.map(|t| {
        if !t.resolved {
            eprintln!(
                "warning: set {} has too few impostor pairs to resolve FAR {:e}; its threshold is \
                 that of the smallest FAR it shows",
                t.set, t.far
            );
        }
        (t.threshold, format!("FAR {:e} on {}", t.far, t.set))
    }))
}

/// Reads, resizes (with a warning) and embeds `paths` on `kind`.
fn embed_paths(
    backbone: &Backbone,
    paths: &[PathBuf],
    options: &EmbedOptions,
    kind: BackendKind,
) -> Result<(Vec<f32>, usize)> {
    let size = backbone.config.image_size as u32;
    let mut images = Vec::with_capacity(paths.len());
    for path in paths {
        let face = read_face(path, size)?;
        if let Some((w, h)) = face.resized_from {
            eprintln!(
                "warning: {} is {w}x{h}, resized to {size}x{size}; embeddings are meant for \
                 aligned {size}x{size} crops",
                path.display()
            );
        }
        images.push(face.image);
    }
    eprintln!("embedding {} images with {}", images.len(), backbone.source);
    backend::on_backend!(kind, |on| {
        let device = on::device(0)?;
        let vit = backbone.load::<on::Backend>(&device)?;
        embed_faces(&vit, &images, options, &device)
    })
}

/// The ONNX bytes of `backbone`, loaded on the CPU backend (export only moves weights).
fn export_bytes(backbone: &Backbone, opset: i64) -> Result<Vec<u8>> {
    #[cfg(feature = "cpu")]
    {
        let vit = backbone.load::<backend::cpu::Backend>(&backend::cpu::device(0)?)?;
        let options = lvface_export::ExportOptions { opset };
        Ok(lvface_export::export_onnx(
            &vit,
            &backbone.config,
            &options,
        )?)
    }
    #[cfg(not(feature = "cpu"))]
    {
        let _ = (backbone, opset);
        bail!("export runs in the cpu build; rebuild with --features cpu")
    }
}

/// `lvface_export::import_weights` on the CPU backend.
fn import_on_cpu(source: &Path, dest: &Path, config: &VitConfig) -> Result<()> {
    #[cfg(feature = "cpu")]
    {
        let device = backend::cpu::device(0)?;
        lvface_export::import_weights::<backend::cpu::Backend>(source, dest, config, &device)?;
        Ok(())
    }
    #[cfg(not(feature = "cpu"))]
    {
        let _ = (source, dest, config);
        bail!("import runs in the cpu build; rebuild with --features cpu")
    }
}

/// Trainable parameters of `config`, counted from shapes (a lazily initialised module
/// allocates nothing).
fn trainable_params(config: &VitConfig) -> usize {
    #[cfg(feature = "cpu")]
    {
        config
            .init::<backend::cpu::Backend>(&Default::default())
            .num_trainable_params()
    }
    #[cfg(not(feature = "cpu"))]
    {
        let _ = config;
        0
    }
}
