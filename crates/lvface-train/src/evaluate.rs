//! Evaluation outside training: a run's latest checkpoint or a weights file embeds `.bin` pair
//! sets with the flip-sum of [`embed_pairs`](crate::embed_pairs); embeddings computed elsewhere
//! come from an `.npy` file. Both end in lvface-eval's [`PairSetResult`] (10-fold figures,
//! TAR@FAR and the ROC of the pair cosines).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use lvface_data::BinPairs;
use lvface_data::{normalize_into, resize_to};
use lvface_eval::{
    evaluate_ijb, evaluate_pair_set, IjbConfig, ImageBatch, NpyArray, PairSetResult, SetReport,
    VerificationConfig,
};
use lvface_vit::{Vit, VitConfig};

use crate::checkpoint;
use crate::config::TrainConfig;
use crate::run_folder::CONFIG_FILE;
use crate::verify::{embed_pairs, values};

/// Images embedded at once when neither the run nor the caller says.
pub const DEFAULT_EVAL_BATCH: usize = 64;

/// Where the backbone to evaluate comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A run folder: its resolved `config.toml` and its latest checkpoint.
    Run(PathBuf),
    /// An insightface-named weights file (`.safetensors`, `.pt`, `.pth`) of a preset.
    Weights {
        /// The file.
        path: PathBuf,
        /// The preset name (`vit_t`, `vit_b`, `vit_l_dp005_mask_005`, …).
        preset: String,
    },
}

/// Everything needed to evaluate a backbone: its architecture and weights, the protocol, the
/// batch size, and the run's own pair sets.
#[derive(Debug, Clone)]
pub struct EvalModel {
    /// What is evaluated, for the report: the run folder and checkpoint, or the weights file.
    pub source: String,
    /// The architecture.
    pub vit: VitConfig,
    /// The weights file.
    pub weights: PathBuf,
    /// The 10-fold protocol: the run's `eval.verification`, or insightface's defaults.
    pub verification: VerificationConfig,
    /// Images embedded at once: the run's `eval.batch_size`, or [`DEFAULT_EVAL_BATCH`].
    pub batch_size: usize,
    /// The pair sets a run verified on (`eval.bins`, and the held-out synthetic pairs of a
    /// synthetic run), named as in its report; empty for a weights file.
    pub run_sets: Vec<(String, PathBuf)>,
}

impl EvalModel {
    /// Reads the run's configuration and finds its latest checkpoint, or checks the preset.
    pub fn resolve(source: &ModelSource) -> Result<Self> {
        match source {
            ModelSource::Run(dir) => {
                let config_path = dir.join(CONFIG_FILE);
                if !config_path.is_file() {
                    bail!("{} is not a run folder (no {CONFIG_FILE})", dir.display());
                }
                let config = TrainConfig::read_resolved(&config_path)?;
                let weights = checkpoint::latest_backbone(dir)?;
                let checkpoint = weights
                    .parent()
                    .and_then(|p| p.file_name())
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                let mut run_sets = Vec::new();
                let synthetic = dir.join("data").join("synthetic_pairs.bin");
                if config.data.rec.is_empty()
                    && config.eval.synthetic_pairs
                    && config.data.synthetic.pairs > 0
                    && synthetic.is_file()
                {
                    run_sets.push(("synthetic".to_string(), synthetic));
                }
                for bin in &config.eval.bins {
                    run_sets.push((set_name(Path::new(bin)), PathBuf::from(bin)));
                }
                Ok(Self {
                    source: format!("{} checkpoint {checkpoint}", dir.display()),
                    vit: config.vit,
                    weights,
                    verification: config.eval.verification,
                    batch_size: config.eval.batch_size,
                    run_sets,
                })
            }
            ModelSource::Weights { path, preset } => {
                if !path.is_file() {
                    bail!("weights file {} does not exist", path.display());
                }
                let vit = VitConfig::preset(preset)?;
                Ok(Self {
                    source: format!("{} ({preset})", path.display()),
                    vit,
                    weights: path.clone(),
                    verification: VerificationConfig::default(),
                    batch_size: DEFAULT_EVAL_BATCH,
                    run_sets: Vec::new(),
                })
            }
        }
    }

    /// The backbone with its weights, on `device`.
    pub fn load<B: Backend>(&self, device: &B::Device) -> Result<Vit<B>> {
        self.vit.validate()?;
        self.vit.check_device::<B>(device)?;
        self.vit
            .init::<B>(device)
            .load_weights(&self.weights)
            .with_context(|| format!("loading the backbone of {}", self.source))
    }
}

/// Embeds the `.bin` set at `path` with `backbone` (each image and its mirror image) and
/// evaluates it under `name`.
pub fn evaluate_bin<B: Backend>(
    backbone: &Vit<B>,
    model: &EvalModel,
    name: &str,
    path: &Path,
    device: &B::Device,
) -> Result<PairSetResult> {
    let pairs = BinPairs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let size = model.vit.image_size as u32;
    let embeddings = embed_pairs(backbone, &pairs, size, model.batch_size, device)
        .with_context(|| format!("embedding {}", path.display()))?;
    evaluate_pair_set(
        name,
        &model.verification.init(),
        &embeddings.embeddings,
        Some(&embeddings.flipped),
        &pairs.issame,
    )
    .with_context(|| format!("evaluating {name}"))
}

/// The IJB targets an `--ijb` folder names, as `(root, target)` for lvface-eval's
/// [`evaluate_ijb`]: the folder itself when it holds `meta/` (the target is its name, `IJBC`),
/// otherwise each of its sub-folders `IJBB` and `IJBC` that holds `meta/`.
pub fn ijb_targets(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    if dir.join("meta").is_dir() {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let target = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let root = dir.parent().map(Path::to_path_buf);
        if let (Some(root), Some(target)) = (root, target) {
            return Ok(vec![(root, target)]);
        }
        bail!(
            "{} has no parent folder to hold the IJB target",
            dir.display()
        );
    }
    let targets: Vec<_> = ["IJBB", "IJBC"]
        .into_iter()
        .filter(|t| dir.join(t).join("meta").is_dir())
        .map(|t| (dir.to_path_buf(), t.to_string()))
        .collect();
    if targets.is_empty() {
        bail!(
            "{} is not an IJB folder: no meta/ in it, nor in IJBB/ or IJBC/ below it",
            dir.display()
        );
    }
    Ok(targets)
}

/// insightface's IJB-B/C template protocol (lvface-eval's [`evaluate_ijb`], mode N1D1F1) on
/// `root/target` with `backbone`: every face aligned to 112x112, resized (bilinear, as a `.bin`
/// image) to the model's `image_size` when that differs, embedded as is and mirrored
/// `batch_size` faces at a time. The set is named `target`; its report has TAR@FAR and no
/// 10-fold figures.
pub fn evaluate_ijb_target<B: Backend>(
    backbone: &Vit<B>,
    model: &EvalModel,
    root: &Path,
    target: &str,
    device: &B::Device,
) -> Result<PairSetResult> {
    let size = model.vit.image_size;
    let result = evaluate_ijb(
        root,
        target,
        &IjbConfig::default(),
        model.batch_size,
        |batch: &ImageBatch<'_>| embed_aligned(backbone, batch, size, device),
    )
    .with_context(|| format!("evaluating {}", root.join(target).display()))?;
    Ok(PairSetResult {
        report: SetReport {
            name: target.to_string(),
            verification: None,
            tar_far: Some(result.report),
        },
        roc: result.roc,
    })
}

/// Embeds a batch of aligned faces (NCHW, normalised), resized to `size` when needed.
fn embed_aligned<B: Backend>(
    backbone: &Vit<B>,
    batch: &ImageBatch<'_>,
    size: usize,
    device: &B::Device,
) -> Result<Vec<f32>> {
    let pixels = if (batch.height, batch.width) == (size, size) {
        batch.data.to_vec()
    } else {
        resize_batch(batch, size as u32)
    };
    let shape = [batch.batch, batch.channels, size, size];
    let images = Tensor::<B, 4>::from_data(TensorData::new(pixels, shape), device);
    values(backbone.forward(images))
}

/// Resizes normalised RGB planes through 8-bit images, as `.bin` images are decoded: the
/// aligned faces come from 8-bit pixels, so the round trip to `u8` is exact.
fn resize_batch(batch: &ImageBatch<'_>, size: u32) -> Vec<f32> {
    let plane = batch.height * batch.width;
    let side = (size * size) as usize;
    let mut out = vec![0.0; batch.batch * 3 * side];
    let to_u8 = |v: f32| ((v * 0.5 + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8;
    for (image, dst) in batch
        .data
        .chunks_exact(3 * plane)
        .zip(out.chunks_exact_mut(3 * side))
    {
        let rgb = image::RgbImage::from_fn(batch.width as u32, batch.height as u32, |x, y| {
            let i = y as usize * batch.width + x as usize;
            image::Rgb([0, 1, 2].map(|c| to_u8(image[c * plane + i])))
        });
        normalize_into(&resize_to(rgb, size), dst);
    }
    out
}

/// Evaluates embeddings computed elsewhere: `npy` holds `[2 x pairs, dim]` rows in the image
/// order of the `.bin` set `bin` (or, with `flipped`, `[2 x 2 x pairs, dim]`: the originals,
/// then the mirrored images, summed by the protocol); the labels come from `bin`, whose images
/// are not decoded. The set is named after `bin`.
pub fn evaluate_embeddings_file(
    npy: &Path,
    bin: &Path,
    flipped: bool,
    verification: &VerificationConfig,
) -> Result<PairSetResult> {
    let pairs = BinPairs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    let (embeddings, mirrored) = NpyArray::read(npy)?
        .into_pair_embeddings(pairs.len(), flipped)
        .with_context(|| format!("{} against {}", npy.display(), bin.display()))?;
    let name = set_name(bin);
    evaluate_pair_set(
        &name,
        &verification.init(),
        &embeddings,
        mirrored.as_ref(),
        &pairs.issame,
    )
    .with_context(|| format!("evaluating {name}"))
}

/// The name of a pair set: its file name without the extension (`lfw` for `data/lfw.bin`).
pub fn set_name(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}
