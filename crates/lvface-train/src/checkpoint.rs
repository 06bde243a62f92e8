//! Checkpoints: everything a run needs to continue exactly where it stopped.
//!
//! A checkpoint is a folder `RUN_DIR/checkpoints/step-NNNNNNNN/` holding
//! - `backbone.safetensors`: the ViT with insightface's names (`Vit::save_weights`), usable as is;
//! - `optimizer.bin`: AdamW's moments and step counts of the backbone, keyed by parameter
//!   position (parameter ids are random per process, positions are not);
//! - `classifier/`: the class-indexed state, one file per rank plus `manifest.json`
//!   (lvface-pfc's sharded checkpoint): centres, their AdamW moments, EMA prototypes and the
//!   class means and squared lengths of the length estimate. Read back onto any number of
//!   ranks, it is re-sharded;
//! - `state.json`: step, epoch, phase, ranks, and what the step's randomness derives from.
//!
//! The folder is written under a `.tmp` name and renamed into place, then `RUN_DIR/checkpoints/
//! latest` (itself written to a temporary file and renamed) names it: a crash at any moment
//! leaves the previous checkpoint whole and named. A write that fails (a full disk) is an
//! error naming the file; the temporary folder is removed, so that nothing half-written is left
//! for a later save or a resume to trip on. Every rank writes its shard into the
//! temporary folder; rank 0 publishes it once all have. Randomness needs no saved generator:
//! masking and drop path reseed the backend from `(seed, batch, rank)`, negative sampling is a
//! pure function of `(seed, batch, rank)`, shuffling and augmentation of `(seed, epoch, index)`,
//! so the data position is the step itself.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::module::{ModuleVisitor, Param, ParamId};
use burn::optim::{AdaptiveMomentumState, Optimizer};
use burn::prelude::*;
use burn::record::{BinBytesRecorder, BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::AutodiffBackend;
use lvface_loss::PrototypeBank;
use lvface_pfc::checkpoint::ShardTensor;
use lvface_pfc::{ClassShard, Collective};
use serde::{Deserialize, Serialize};

use crate::model::TrainModel;
use crate::optim::{BackboneOptim, Optim};
use crate::ranks::agree;

/// The backbone optimizer's state: moments and step count per parameter.
type OptimRecord<B> = <BackboneOptim<B> as Optimizer<TrainModel<B>, B>>::Record;

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
    /// Ranks the run had when this was written; a run resumes on another number of ranks from
    /// an epoch end.
    #[serde(default = "one")]
    pub world_size: usize,
    /// AdamW's step count of the centre shards (their moments are in the class shards).
    #[serde(default)]
    pub centre_steps: usize,
    /// Steps skipped so far because their loss or gradient was not finite.
    #[serde(default)]
    pub skipped: u64,
    /// What CurricularFace and AdaFace carry from step to step.
    #[serde(default)]
    pub margins: MarginState,
}

/// The running statistics of the margin losses that keep some (the same on every rank):
/// CurricularFace's `t` and AdaFace's batch-norm mean and deviation. They start as the papers'
/// code starts them and carry over from one phase to the next.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarginState {
    /// CurricularFace's running mean of target cosines.
    pub curricular_face_t: f64,
    /// AdaFace's running mean of embedding norms.
    pub ada_face_norm_mean: f64,
    /// AdaFace's running standard deviation of embedding norms.
    pub ada_face_norm_std: f64,
}

impl Default for MarginState {
    fn default() -> Self {
        let curricular = lvface_loss::CurricularFaceConfig::default().init();
        let ada = lvface_loss::AdaFaceConfig::default().init();
        Self {
            curricular_face_t: curricular.t(),
            ada_face_norm_mean: ada.norm_mean,
            ada_face_norm_std: ada.norm_std,
        }
    }
}

fn one() -> usize {
    1
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

/// Writes a checkpoint of `state` and makes it the latest; keeps the newest `keep`. Every rank
/// calls it: each writes its class shard, rank 0 the rest.
#[allow(clippy::too_many_arguments)]
pub fn save<B: AutodiffBackend, C: Collective<B::InnerBackend>>(
    run_dir: &Path,
    state: &TrainState,
    shard: ClassShard,
    model: &TrainModel<B>,
    optim: &Optim<B>,
    bank: &PrototypeBank<B>,
    keep: usize,
    comm: &C,
) -> Result<PathBuf> {
    let device = model.centres.device();
    let lead = comm.rank() == 0;
    let root = checkpoints_dir(run_dir);
    let name = format!("step-{:08}", state.step);
    let dir = root.join(&name);
    let tmp = root.join(format!("{name}.tmp"));
    let prepared = || -> Result<()> {
        remove_temporaries(&root)?;
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))
    };
    agree(comm, &device, if lead { prepared() } else { Ok(()) })?;
    // Every error below reaches all ranks through `agree` before any returns it, so no rank
    // is still writing into the folder when rank 0 removes it.
    let _unpublished = lead.then(|| RemoveOnDrop(tmp.clone()));

    let backbone_moments = backbone_record(model, optim);
    let centre_moments = optim.centres.state();
    let mut tensors = vec![
        shard_tensor(CENTRES, model.centres.val().inner()),
        shard_tensor(PROTOTYPES, bank.prototypes().inner()),
        shard_tensor(MEANS, bank.means().inner()),
        shard_tensor(SQUARED_LENGTHS, bank.squared_lengths().inner()),
    ];
    if let Some(state) = centre_moments {
        tensors.push(shard_tensor(MOMENT_1, state.moment_1.clone()));
        tensors.push(shard_tensor(MOMENT_2, state.moment_2.clone()));
    }
    let classifier = tmp.join(CLASSIFIER);
    let written = lvface_pfc::checkpoint::save_shard(&classifier, shard, &tensors)
        .map_err(anyhow::Error::from);
    agree(comm, &device, written)?;

    let published = || -> Result<()> {
        lvface_pfc::checkpoint::write_manifest(
            &classifier,
            shard.num_classes,
            shard.world_size,
            &tensors,
        )?;
        // burn keeps a step's BatchNorm running-statistics update pending until the next
        // forward pass; turning a clone (which shares the state) into a record applies it, so
        // the file holds the statistics of the step just done.
        let _ = model.backbone.clone().into_record();
        model.backbone.save_weights(tmp.join(BACKBONE_FILE))?;
        // Encoded in memory (two moments a parameter) and written here rather than by the file
        // recorder, whose buffered writer drops an error of its last flush: a disk filling up
        // at the end of the file would leave a short optimizer.bin that looks written.
        let moments = Recorder::<B>::record(
            &BinBytesRecorder::<FullPrecisionSettings>::new(),
            backbone_moments,
            (),
        )
        .context("encoding the optimizer state")?;
        write_synced(&tmp.join("optimizer.bin"), &moments)?;
        let state = TrainState {
            centre_steps: centre_moments.map_or(0, |s| s.time),
            world_size: shard.world_size,
            ..state.clone()
        };
        write_atomic(
            &tmp.join("state.json"),
            &serde_json::to_string_pretty(&state)?,
        )?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::rename(&tmp, &dir).with_context(|| format!("renaming {}", tmp.display()))?;
        write_atomic(&root.join(LATEST), &name)?;
        prune(&root, keep)
    };
    agree(comm, &device, if lead { published() } else { Ok(()) })?;
    Ok(dir)
}

/// Reads the checkpoint in `dir` into a freshly built model (holding `shard`'s centres),
/// optimizer and bank. The class-indexed state is re-sharded when the checkpoint was written by
/// another number of ranks.
pub fn load<B: AutodiffBackend>(
    dir: &Path,
    shard: ClassShard,
    mut model: TrainModel<B>,
    mut optim: Optim<B>,
    bank: &mut PrototypeBank<B>,
    device: &B::Device,
) -> Result<(TrainState, TrainModel<B>, Optim<B>)> {
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("reading {}", state_path.display()))?;
    let state: TrainState =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", state_path.display()))?;

    model.backbone = model.backbone.load_weights(dir.join(BACKBONE_FILE))?;
    let optim_path = dir.join("optimizer.bin");
    check_optimizer_size(&optim_path, &model.backbone)?;
    let moments: OptimRecord<B> = BinFileRecorder::<FullPrecisionSettings>::new()
        .load(dir.join("optimizer"), device)
        .with_context(|| format!("reading {}", optim_path.display()))?;
    let ids = param_order(&model.backbone);
    let mut rekeyed = OptimRecord::<B>::default();
    for (position, record) in moments {
        let id = ids.get(position.val() as usize).with_context(|| {
            format!(
                "{} has state for parameter {position}, the backbone has {}",
                optim_path.display(),
                ids.len()
            )
        })?;
        rekeyed.insert(*id, record);
    }

    let classifier = dir.join(CLASSIFIER);
    let mut tensors =
        lvface_pfc::checkpoint::by_name(lvface_pfc::checkpoint::load_shard(&classifier, shard)?);
    let has_means = tensors.contains_key(MEANS);
    let mut take = |name: &str| {
        tensors.remove(name).with_context(|| {
            format!(
                "{} holds no `{name}`",
                classifier.join("manifest.json").display()
            )
        })
    };
    let centres = take(CENTRES)?;
    let dim = model.centres.dims()[1];
    if centres.shape != [shard.num_local(), dim] {
        bail!(
            "{} holds centres of width {:?}, the run has {dim}",
            classifier.display(),
            &centres.shape[1..]
        );
    }
    model = model.with_centres(from_shard(centres, device));
    let bank_config = *bank.config();
    let prototypes = Tensor::from_inner(from_shard(take(PROTOTYPES)?, device));
    *bank = if has_means {
        PrototypeBank::from_state(
            bank_config,
            prototypes,
            Tensor::from_inner(from_shard(take(MEANS)?, device)),
            Tensor::from_inner(from_shard::<B::InnerBackend, 1>(
                take(SQUARED_LENGTHS)?,
                device,
            )),
        )
    } else {
        // Written before the bank kept class means: its lengths seed them.
        PrototypeBank::from_tensors(
            bank_config,
            prototypes,
            Tensor::from_inner(from_shard::<B::InnerBackend, 1>(take(LENGTHS)?, device)),
        )
    };
    let centre_state = if state.centre_steps > 0 {
        Some(AdaptiveMomentumState::new(
            state.centre_steps,
            from_shard(take(MOMENT_1)?, device),
            from_shard(take(MOMENT_2)?, device),
        ))
    } else {
        None
    };
    optim.centres.set_state(centre_state);
    optim.backbone = optim.backbone.load_record(rekeyed);
    Ok((state, model, optim))
}

/// Refuses an `optimizer.bin` larger than the backbone's AdamW state can be (two f32 moments a
/// parameter, stored as f64 at most, plus the record's framing): the recorder reads a file whole,
/// so a damaged or foreign file could otherwise claim any amount of memory.
fn check_optimizer_size<B: Backend>(path: &Path, backbone: &lvface_vit::Vit<B>) -> Result<()> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let limit = 2 * 8 * backbone.num_params() as u64 + (16 << 20);
    if size > limit {
        bail!(
            "{} is {size} bytes, more than the {limit} that AdamW's state of this backbone can \
             take: not this run's optimizer state",
            path.display()
        );
    }
    Ok(())
}

/// The class-indexed tensors of a checkpoint, in `CLASSIFIER/`.
const CLASSIFIER: &str = "classifier";
const CENTRES: &str = "centres";
const MOMENT_1: &str = "centres.adamw.moment_1";
const MOMENT_2: &str = "centres.adamw.moment_2";
const PROTOTYPES: &str = "prototypes";
const MEANS: &str = "prototype_means";
const SQUARED_LENGTHS: &str = "prototype_squared_lengths";
/// What checkpoints written before `prototype_means` held instead of it and the squared lengths.
const LENGTHS: &str = "prototype_lengths";

/// The backbone's AdamW state, keyed by parameter position.
fn backbone_record<B: AutodiffBackend>(model: &TrainModel<B>, optim: &Optim<B>) -> OptimRecord<B> {
    let ids = param_order(&model.backbone);
    let mut backbone = OptimRecord::<B>::default();
    for (id, record) in optim.backbone.to_record() {
        backbone.insert(ParamId::from(position(&ids, id) as u64), record);
    }
    backbone
}

fn shard_tensor<B: Backend, const D: usize>(name: &str, tensor: Tensor<B, D>) -> ShardTensor {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("float tensor");
    ShardTensor {
        name: name.into(),
        shape,
        values,
    }
}

fn from_shard<B: Backend, const D: usize>(tensor: ShardTensor, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(tensor.values, tensor.shape), device)
}

/// Writes `text` to `path` through a temporary file renamed into place; on failure the
/// temporary file is removed and `path` is as it was.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = write_synced(&tmp, text.as_bytes()).and_then(|()| {
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes `bytes` to a new file `path` and waits until they are on the disk, so that a full
/// disk or a device error shows here, naming the file, and not after the checkpoint is named.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Removes what a save that failed or was killed left in the checkpoint folder `root`: the
/// temporary `step-*.tmp` folders and `latest.tmp`, none of which a resume reads.
fn remove_temporaries(root: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(());
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.extension().is_some_and(|e| e == "tmp") {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Removes a checkpoint's temporary folder when the save returns without having renamed it
/// into place.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Parameter ids in visiting order, which is fixed by the module's structure.
fn param_order<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamId> {
    struct Ids(Vec<ParamId>);
    impl<B: Backend> ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.id);
        }
    }
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
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
