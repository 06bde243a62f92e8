//! Checkpoints: everything a run needs to continue exactly where it stopped.
//!
//! A checkpoint is a folder `RUN_DIR/checkpoints/step-NNNNNNNN/` holding
//! - `backbone.safetensors`: the ViT with insightface's names (`Vit::save_weights`), usable as is;
//! - `centres.bin`: the centre matrix (burn record, full precision);
//! - `prototypes.safetensors`: the EMA prototype bank;
//! - `optimizer.bin`: AdamW's moments and step counts, keyed by parameter position (parameter
//!   ids are random per process, positions are not);
//! - `state.json`: step, epoch, phase, and what the step's randomness derives from.
//!
//! The folder is written under a `.tmp` name and renamed into place, then `RUN_DIR/checkpoints/
//! latest` (itself written to a temporary file and renamed) names it: a crash at any moment
//! leaves the previous checkpoint whole and named. Randomness needs no saved generator: masking
//! and drop path reseed the backend from `(seed, step)` each step, negative sampling is a pure
//! function of `(seed, step)`, shuffling and augmentation of `(seed, epoch, index)`, so the data
//! position is the step itself.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::module::{ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, Optimizer};
use burn::prelude::*;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use lvface_loss::PrototypeBank;
use serde::{Deserialize, Serialize};

use crate::model::TrainModel;

/// The optimizer of a run.
pub type Optim<B> = OptimizerAdaptor<AdamW, TrainModel<B>, B>;
/// Its state: moments and step count per parameter.
type OptimRecord<B> = <Optim<B> as Optimizer<TrainModel<B>, B>>::Record;

/// Where a run stands; `state.json` of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps done (the next step to run).
    pub step: u64,
    /// Epoch of the next step.
    pub epoch: u64,
    /// Batches of that epoch already consumed.
    pub batch_in_epoch: u64,
    /// Curriculum phase of the last step done.
    pub phase: usize,
    /// Steps per epoch of the data the run trains on.
    pub steps_per_epoch: u64,
    /// Number of classes.
    pub classes: usize,
    /// `run.seed`: masking and drop path of step `t` use backend seed `step_seed(seed, t)`,
    /// sampling uses `(seed, t)`, shuffling and augmentation `(seed, epoch, index)`.
    pub seed: u64,
    /// Loss of the last step done.
    pub loss: f64,
}

const LATEST: &str = "latest";
/// The backbone weights in a checkpoint folder.
pub const BACKBONE_FILE: &str = "backbone.safetensors";

/// The checkpoint folder of a run.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// The newest complete checkpoint of `run_dir`, if any.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    let pointer = checkpoints_dir(run_dir).join(LATEST);
    if !pointer.exists() {
        return Ok(None);
    }
    let name = std::fs::read_to_string(&pointer)
        .with_context(|| format!("reading {}", pointer.display()))?;
    let dir = checkpoints_dir(run_dir).join(name.trim());
    if !dir.is_dir() {
        bail!(
            "{} names {}, which is not a folder",
            pointer.display(),
            dir.display()
        );
    }
    Ok(Some(dir))
}

/// The backbone weights of the newest complete checkpoint of `run_dir`; an error when the run
/// has none yet.
pub fn latest_backbone(run_dir: &Path) -> Result<PathBuf> {
    let Some(dir) = latest(run_dir)? else {
        bail!(
            "{} has no checkpoint yet (no {})",
            run_dir.display(),
            checkpoints_dir(run_dir).join(LATEST).display()
        );
    };
    let path = dir.join(BACKBONE_FILE);
    if !path.is_file() {
        bail!("checkpoint {} has no {BACKBONE_FILE}", dir.display());
    }
    Ok(path)
}

/// Writes a checkpoint of `state` and makes it the latest; keeps the newest `keep`.
pub fn save<B: AutodiffBackend>(
    run_dir: &Path,
    state: &TrainState,
    model: &TrainModel<B>,
    optim: &Optim<B>,
    bank: &PrototypeBank<B>,
    keep: usize,
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    let name = format!("step-{:08}", state.step);
    let dir = root.join(&name);
    let tmp = root.join(format!("{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;

    // burn keeps a step's BatchNorm running-statistics update pending until the next forward
    // pass; turning a clone (which shares the state) into a record applies it, so the file
    // holds the statistics of the step just done.
    let _ = model.backbone.clone().into_record();
    model.backbone.save_weights(tmp.join(BACKBONE_FILE))?;
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let centres = CentresRecord {
        centres: model.centres.clone(),
    };
    recorder
        .record(centres.into_record(), tmp.join("centres"))
        .context("writing the centres")?;
    let ids = param_order(model);
    let moments: OptimRecord<B> = optim
        .to_record()
        .into_iter()
        .map(|(id, record)| (ParamId::from(position(&ids, id) as u64), record))
        .collect();
    recorder
        .record(moments, tmp.join("optimizer"))
        .context("writing the optimizer state")?;
    bank.save(tmp.join("prototypes.safetensors"))?;
    write_atomic(
        &tmp.join("state.json"),
        &serde_json::to_string_pretty(state)?,
    )?;

    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("renaming {}", tmp.display()))?;
    write_atomic(&root.join(LATEST), &name)?;
    prune(&root, keep)?;
    Ok(dir)
}

/// Reads the checkpoint in `dir` into a freshly built model, optimizer and bank.
pub fn load<B: AutodiffBackend>(
    dir: &Path,
    mut model: TrainModel<B>,
    optim: Optim<B>,
    bank: &mut PrototypeBank<B>,
    device: &B::Device,
) -> Result<(TrainState, TrainModel<B>, Optim<B>)> {
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("reading {}", state_path.display()))?;
    let state: TrainState =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", state_path.display()))?;

    let ids = param_order(&model);
    model.backbone = model.backbone.load_weights(dir.join(BACKBONE_FILE))?;
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let centres_path = dir.join("centres.bin");
    let record = recorder
        .load(dir.join("centres"), device)
        .with_context(|| format!("reading {}", centres_path.display()))?;
    let centres = CentresRecord {
        centres: model.centres.clone(),
    }
    .load_record(record);
    let [want, got] = [model.centres.dims(), centres.centres.dims()];
    if want != got {
        bail!(
            "{} holds centres of shape {got:?}, the run has {want:?}",
            centres_path.display()
        );
    }
    model = model.with_centres(centres.centres.val());

    let optim_path = dir.join("optimizer.bin");
    let moments: OptimRecord<B> = recorder
        .load(dir.join("optimizer"), device)
        .with_context(|| format!("reading {}", optim_path.display()))?;
    let mut rekeyed = OptimRecord::<B>::default();
    for (position, record) in moments {
        let id = ids.get(position.val() as usize).with_context(|| {
            format!(
                "{} has state for parameter {position}, the model has {}",
                optim_path.display(),
                ids.len()
            )
        })?;
        rekeyed.insert(*id, record);
    }
    let optim = optim.load_record(rekeyed);
    bank.load(dir.join("prototypes.safetensors"))?;
    Ok((state, model, optim))
}

/// Writes `text` to `path` through a temporary file renamed into place.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))
}

#[derive(Module, Debug)]
struct CentresRecord<B: Backend> {
    centres: Param<Tensor<B, 2>>,
}

/// Parameter ids in visiting order, which is fixed by the module's structure.
fn param_order<B: Backend>(model: &TrainModel<B>) -> Vec<ParamId> {
    struct Ids(Vec<ParamId>);
    impl<B: Backend> ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.id);
        }
    }
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    ids.0
}

fn position(ids: &[ParamId], id: ParamId) -> usize {
    ids.iter()
        .position(|&i| i == id)
        .expect("the optimizer only holds state for the model's parameters")
}

/// Deletes all but the newest `keep` checkpoints.
fn prune(root: &Path, keep: usize) -> Result<()> {
    let mut steps: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| format!("listing {}", root.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-") && !n.ends_with(".tmp"))
        })
        .collect();
    steps.sort();
    let excess = steps.len().saturating_sub(keep);
    for old in &steps[..excess] {
        std::fs::remove_dir_all(old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}
