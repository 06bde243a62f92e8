//! The training run: data, backbone, classification layer with the curriculum's phase, AdamW
//! with the per-step schedule, global-norm clipping, checkpoints, and verification at the end.
// The run reports progress on stdout, one line every `run.log_every` steps.
#![allow(clippy::print_stdout)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use lvface_data::{BinPairs, FaceSource, Loader, LoaderConfig, RecordDataset, SyntheticFaces};
use lvface_eval::VerificationReport;
use lvface_loss::{NegativeSamplerConfig, Phase, PrototypeBank, SampledClasses, StableStageConfig};

use crate::checkpoint::{self, Optim, TrainState};
use crate::clip::clip_global_norm;
use crate::config::{LossConfig, TrainConfig};
use crate::model::TrainModel;
use crate::schedule::Schedule;
use crate::verify;

/// The resolved configuration inside a run folder.
pub const CONFIG_FILE: &str = "config.toml";
/// One JSON object per step.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// What a call to [`train`] did.
#[derive(Debug)]
pub struct RunSummary {
    /// Steps done in all (this session and earlier ones).
    pub steps: u64,
    /// `(step, loss)` of the steps this session ran, `step` counting from 1.
    pub losses: Vec<(u64, f64)>,
    /// Whether the run reached its last step (and was verified).
    pub finished: bool,
    /// Verification of the trained backbone, per pair set.
    pub verification: Vec<(String, VerificationReport)>,
    /// Raw pixels on the same sets.
    pub pixel_baseline: Vec<(String, VerificationReport)>,
}

/// Checks what can be checked before anything is written (the folder is new or empty, the
/// data and pair sets exist), then creates `run_dir` and writes the resolved configuration.
pub fn create_run(config: &TrainConfig, run_dir: &Path) -> Result<()> {
    let occupied = run_dir.exists()
        && std::fs::read_dir(run_dir)
            .with_context(|| format!("listing {}", run_dir.display()))?
            .next()
            .is_some();
    if occupied {
        bail!(
            "run folder {} is not empty; continue it with --resume {0}, or choose another --out",
            run_dir.display()
        );
    }
    if !config.data.rec.is_empty() {
        open_rec(&config.data.rec)?;
    }
    for (i, bin) in config.eval.bins.iter().enumerate() {
        if !Path::new(bin).is_file() {
            bail!("eval.bins[{i}]: {bin} does not exist");
        }
    }
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    checkpoint::write_atomic(&run_dir.join(CONFIG_FILE), &config.to_toml()?)
}

/// Runs (or continues, from its latest checkpoint) the run in `run_dir`, created by
/// [`create_run`].
pub fn train<B: AutodiffBackend>(run_dir: &Path, device: &B::Device) -> Result<RunSummary> {
    let config = TrainConfig::read_resolved(&run_dir.join(CONFIG_FILE))?;
    let seed = config.run.seed;
    let data = open_data(&config, run_dir)?;
    let loader = data.loader;
    let schedule = Schedule::new(&config, loader.batches_per_epoch() as u64);
    if schedule.steps_per_epoch == 0 {
        bail!(
            "data.batch_size = {} is larger than the {} training images",
            config.data.batch_size,
            data.images
        );
    }
    let curriculum = config.loss.curriculum.init();

    B::seed(device, seed);
    let mut model = TrainModel::<B>::init(&config.vit, data.classes, device);
    let mut optim: Optim<B> = AdamWConfig::new()
        .with_beta_1(config.optim.beta1 as f32)
        .with_beta_2(config.optim.beta2 as f32)
        .with_epsilon(config.optim.epsilon as f32)
        .with_weight_decay(config.optim.weight_decay as f32)
        .init();
    let mut bank = config
        .loss
        .prototypes
        .init::<B>(data.classes, config.vit.num_features, device);
    let mut state = TrainState {
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        phase: 0,
        steps_per_epoch: schedule.steps_per_epoch,
        classes: data.classes,
        seed,
        loss: f64::NAN,
    };
    if let Some(dir) = checkpoint::latest(run_dir)? {
        let loaded = checkpoint::load(&dir, model, optim, &mut bank, device)
            .with_context(|| format!("cannot resume from checkpoint {}", dir.display()))?;
        (state, model, optim) = loaded;
        if (state.steps_per_epoch, state.classes) != (schedule.steps_per_epoch, data.classes) {
            bail!(
                "checkpoint {} was taken with {} steps per epoch and {} classes, the data now \
                 gives {} and {}",
                dir.display(),
                state.steps_per_epoch,
                state.classes,
                schedule.steps_per_epoch,
                data.classes
            );
        }
        println!("resuming at step {} from {}", state.step, dir.display());
    }
    let mut metrics = open_metrics(run_dir, state.step)?;

    println!(
        "training {} classes, {} images, {} steps ({} per epoch, {} epochs), batch {}",
        data.classes,
        data.images,
        schedule.total_steps,
        schedule.steps_per_epoch,
        config.loss.curriculum.epochs,
        config.data.batch_size
    );
    let mut losses = Vec::new();
    let mut window = (Instant::now(), 0usize);
    // A run that already stopped at `run.stop_at_step` is being resumed: go on to the end.
    let stop_at = match config.run.stop_at_step {
        n if n > state.step => n.min(schedule.total_steps),
        _ => schedule.total_steps,
    };
    while state.step < stop_at {
        let epoch = schedule.epoch_of(state.step);
        let phase_index = curriculum.phase_index(epoch as usize);
        let phase = curriculum.config().phases[phase_index];
        let skip = (state.step - epoch * schedule.steps_per_epoch) as usize;
        for batch in loader.epoch(epoch).skip(skip) {
            let batch = batch?;
            let step = state.step;
            // data -> backbone (train mode) -> classification layer of this phase
            B::seed(device, step_seed(seed, step));
            let labels = batch.labels_tensor::<B>(device);
            let embeddings = model.backbone.forward(batch.to_tensor::<B>(device));
            let features = embeddings.clone().detach();
            let (loss, sample) = phase_loss(
                &phase,
                &config.loss,
                seed,
                step,
                &model,
                embeddings,
                &batch,
                &bank,
            );
            let loss_value: f64 = loss.clone().into_scalar().elem();
            if !loss_value.is_finite() {
                bail!(
                    "the loss is {loss_value} at step {} (epoch {epoch}, phase {phase_index}); \
                     stopped, the last good checkpoint is {}",
                    step + 1,
                    checkpoint::latest(run_dir)?
                        .map_or("none yet".into(), |d| d.display().to_string())
                );
            }
            // backward -> clip the backbone -> AdamW step -> prototypes
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            let grad_norm = clip_global_norm(&model.backbone, &mut grads, config.optim.clip_norm);
            let lr = schedule.lr(step);
            let before = model.centres.val();
            model = optim.step(lr, model, grads);
            if let Some(sample) = sample {
                let after = model.centres.val();
                model = model.with_centres(sample.keep_unsampled_rows(before, after));
            }
            bank.update(features, labels);

            state = TrainState {
                step: step + 1,
                epoch: schedule.epoch_of(step + 1),
                batch_in_epoch: (step + 1) % schedule.steps_per_epoch,
                phase: phase_index,
                loss: loss_value,
                ..state
            };
            losses.push((state.step, loss_value));
            window.1 += batch.len();
            let images_per_s = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
            writeln!(
                metrics,
                "{}",
                serde_json::json!({
                    "step": state.step, "epoch": epoch, "phase": phase_index, "loss": loss_value,
                    "lr": lr, "grad_norm": grad_norm, "images_per_s": images_per_s,
                })
            )?;
            if state.step % config.run.log_every == 0 || state.step == stop_at {
                println!(
                    "step {:>6}/{} epoch {epoch} phase {phase_index} ({}) loss {loss_value:.4} \
                     lr {lr:.2e} grad_norm {grad_norm:.3} images/s {images_per_s:.1}",
                    state.step,
                    schedule.total_steps,
                    if phase.prototypes { "stable" } else { "early" },
                );
                window = (Instant::now(), 0);
            }
            let every = config.run.checkpoint_every;
            let epoch_end = state.batch_in_epoch == 0;
            if epoch_end || (every > 0 && state.step % every == 0) || state.step == stop_at {
                checkpoint::save(
                    run_dir,
                    &state,
                    &model,
                    &optim,
                    &bank,
                    config.run.keep_checkpoints,
                )?;
            }
            if state.step == stop_at {
                break;
            }
        }
        metrics.flush()?;
    }
    let finished = state.step == schedule.total_steps;
    let mut summary = RunSummary {
        steps: state.step,
        losses,
        finished,
        verification: Vec::new(),
        pixel_baseline: Vec::new(),
    };
    if finished {
        let backbone = model.backbone.valid();
        let size = config.vit.image_size as u32;
        let verification = &config.eval.verification;
        for (name, pairs) in &data.pairs {
            let embeddings =
                verify::embed_pairs(&backbone, pairs, size, config.eval.batch_size, device)?;
            let report = verify::verification(&embeddings, &pairs.issame, verification)
                .with_context(|| format!("verifying on {name}"))?;
            summary.verification.push((name.clone(), report));
            if config.eval.pixel_baseline {
                let report = verify::pixel_baseline(pairs, size, verification)?;
                summary.pixel_baseline.push((name.clone(), report));
            }
        }
        write_report(run_dir, &summary)?;
    }
    Ok(summary)
}

/// The classification loss of the phase: combined margin over the sampled centres in the early
/// phase; the stable-stage loss over all centres with the prototype bank once prototypes are on.
#[allow(clippy::too_many_arguments)]
fn phase_loss<B: AutodiffBackend>(
    phase: &Phase,
    config: &LossConfig,
    seed: u64,
    step: u64,
    model: &TrainModel<B>,
    embeddings: Tensor<B, 2>,
    batch: &lvface_data::Batch,
    bank: &PrototypeBank<B>,
) -> (Tensor<B, 1>, Option<SampledClasses>) {
    let device = embeddings.device();
    let labels = batch.labels_tensor::<B>(&device);
    if phase.prototypes {
        let stable = StableStageConfig {
            margin: phase.margin,
            prototype_weight: config.prototype_weight,
            expectation_weighting: config.expectation_weighting,
        }
        .init();
        let loss = stable.forward(embeddings, model.centres.val(), labels, bank);
        return (loss, None);
    }
    let margin = phase.margin.init();
    if !phase.sampling {
        return (
            margin.forward(embeddings, model.centres.val(), labels),
            None,
        );
    }
    let sampler = NegativeSamplerConfig {
        sample_rate: phase.sample_rate,
        seed,
    }
    .init();
    let classes = model.centres.dims()[0];
    let sample = sampler.sample(&batch.labels, classes, step);
    let centres = sample.select_centres(model.centres.val());
    let loss = margin.forward(embeddings, centres, sample.label_tensor(&device));
    (loss, Some(sample))
}

/// The backend seed of step `step`: SplitMix64 of the pair, so that masking and drop path of a
/// step do not depend on how many steps this process ran before it.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed ^ step.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Data {
    loader: Loader,
    classes: usize,
    images: usize,
    pairs: Vec<(String, BinPairs)>,
}

fn open_rec(rec: &str) -> Result<RecordDataset> {
    let path = Path::new(rec);
    if !path.exists() {
        bail!("data.rec: {rec} does not exist");
    }
    RecordDataset::open(path).with_context(|| format!("data.rec: opening {rec}"))
}

/// The training set (rendering the synthetic one into the run folder the first time) and the
/// verification pair sets.
fn open_data(config: &TrainConfig, run_dir: &Path) -> Result<Data> {
    let mut pairs = Vec::new();
    let source: Arc<dyn FaceSource> = if config.data.rec.is_empty() {
        let dir = run_dir.join("data");
        let bin = dir.join("synthetic_pairs.bin");
        if !dir.exists() {
            let tmp = run_dir.join("data.tmp");
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp)?;
            }
            let faces = SyntheticFaces::new(config.data.synthetic.clone())?;
            let (images, classes) = faces.write_rec(&tmp)?;
            faces.write_bin(&tmp.join("synthetic_pairs.bin"))?;
            std::fs::rename(&tmp, &dir)?;
            println!(
                "rendered {images} synthetic images of {classes} identities into {}",
                dir.display()
            );
        }
        if config.eval.synthetic_pairs && config.data.synthetic.pairs > 0 {
            pairs.push(("synthetic".to_string(), BinPairs::read(&bin)?));
        }
        Arc::new(RecordDataset::open(&dir)?)
    } else {
        Arc::new(open_rec(&config.data.rec)?)
    };
    for bin in &config.eval.bins {
        let name = crate::evaluate::set_name(Path::new(bin));
        let set = BinPairs::read(Path::new(bin)).with_context(|| format!("eval.bins: {bin}"))?;
        pairs.push((name, set));
    }
    let classes = source.num_classes().with_context(|| {
        "the training set does not say how many classes it has (no identity records and no \
         `property` file)"
    })?;
    let images = source.len();
    let loader_config = LoaderConfig {
        batch_size: config.data.batch_size,
        workers: config.data.workers,
        prefetch: config.data.prefetch,
        seed: config.run.seed,
        shuffle: true,
        image_size: config.vit.image_size as u32,
        on_corrupt: config.data.on_corrupt,
        augment: config.data.augment.clone(),
    };
    Ok(Data {
        loader: Loader::new(source, loader_config, 0, 1)?,
        classes,
        images,
        pairs,
    })
}

/// `metrics.jsonl` for appending, without the lines of steps after `step` (an interrupted
/// session may have logged steps that the resumed run repeats).
fn open_metrics(run_dir: &Path, step: u64) -> Result<File> {
    let path = run_dir.join(METRICS_FILE);
    if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["step"].as_u64())
                    .is_some_and(|s| s <= step)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        checkpoint::write_atomic(&path, &kept)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Prints the verification table and writes it to `RUN_DIR/report.json`.
fn write_report(run_dir: &Path, summary: &RunSummary) -> Result<()> {
    println!(
        "{:<16} {:>9} {:>9} {:>16}",
        "set", "accuracy", "std", "pixels accuracy"
    );
    let mut sets = Vec::new();
    for (name, report) in &summary.verification {
        let pixels = summary
            .pixel_baseline
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.accuracy);
        println!(
            "{name:<16} {:>9.4} {:>9.4} {:>16}",
            report.accuracy,
            report.accuracy_std,
            pixels.map_or("-".into(), |a| format!("{a:.4}"))
        );
        sets.push(serde_json::json!({
            "set": name, "pairs": report.pairs, "accuracy": report.accuracy,
            "accuracy_std": report.accuracy_std, "threshold": report.threshold,
            "val": report.val, "pixel_accuracy": pixels,
        }));
    }
    let report = serde_json::json!({
        "steps": summary.steps,
        "final_loss": summary.losses.last().map(|l| l.1),
        "verification": sets,
    });
    checkpoint::write_atomic(
        &run_dir.join("report.json"),
        &serde_json::to_string_pretty(&report)?,
    )
}

/// A fresh folder `runs/run-<unix seconds>[-n]` under `root`.
pub fn fresh_run_dir(root: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = root.join("runs").join(format!("run-{secs}"));
    let mut dir = base.clone();
    let mut n = 1;
    while dir.exists() {
        dir = PathBuf::from(format!("{}-{n}", base.display()));
        n += 1;
    }
    dir
}
