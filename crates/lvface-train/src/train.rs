//! The training run: data, backbone, classification layer with the curriculum's phase, AdamW
//! with the per-step schedule, global-norm clipping, checkpoints, and verification at the end.
// The run reports progress on stdout, one line every `run.log_every` steps.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use lvface_data::{BinPairs, FaceSource, Loader, LoaderConfig, RecordDataset, SyntheticFaces};
use lvface_eval::VerificationReport;
use lvface_pfc::{
    run_local_peers, BurnCollective, ClassShard, Collective, Launch, PartialFcConfig, Solo,
};

use crate::checkpoint::{self, MarginState, TrainState};
use crate::config::{NonFinitePolicy, TrainConfig};
use crate::model::TrainModel;
use crate::optim::{init_optimizer, Optim};
use crate::progress::Progress;
use crate::ranks::{agree, check_same_weights, first_failure, lead_decides, GENERATOR};
use crate::report;
use crate::schedule::Schedule;
use crate::source::{check_class_count, check_training_source, open_training_source};
use crate::step::{Outcome, StepPlan};
use crate::stop::{any_rank_asked_to_stop, at_step};

/// The held-out synthetic pairs in a run's `data/` folder.
const SYNTHETIC_PAIRS: &str = "synthetic_pairs.bin";
/// The same pairs with a face mask on the second face.
const SYNTHETIC_MASKED_PAIRS: &str = "synthetic_masked_pairs.bin";

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
    /// Whether it stopped early because a rank was asked to (SIGTERM, SIGINT), after writing a
    /// checkpoint.
    pub interrupted: bool,
    /// Verification of the trained backbone, per pair set.
    pub verification: Vec<(String, VerificationReport)>,
    /// Raw pixels on the same sets.
    pub pixel_baseline: Vec<(String, VerificationReport)>,
    /// Accuracy of the starting backbone on the same sets, per set, when the run started from
    /// `finetune.backbone` (verified before its first step).
    pub start_accuracy: Vec<(String, f64)>,
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
        check_training_source(&config.data.rec)?;
    }
    for (i, bin) in config.eval.bins.iter().enumerate() {
        if !Path::new(bin).is_file() {
            bail!("eval.bins[{i}]: {bin} does not exist");
        }
    }
    crate::finetune::check(config)?;
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    checkpoint::write_atomic(&run_dir.join(CONFIG_FILE), &config.to_toml()?)
}

/// Runs (or continues, from its latest checkpoint) the run in `run_dir`, created by
/// [`create_run`], on one device.
pub fn train<B: AutodiffBackend>(run_dir: &Path, device: &B::Device) -> Result<RunSummary> {
    run_rank::<B, _>(run_dir, device, &Solo::new())
}

/// The same on `world` in-process ranks, rank `r` on `devices[r % devices.len()]`: the backbone
/// data parallel, the classification layer sharded (lvface-pfc). Returns rank 0's summary, or
/// the error of the rank that failed.
pub fn train_local<B: AutodiffBackend>(
    run_dir: &Path,
    devices: &[B::Device],
    world: usize,
) -> Result<RunSummary> {
    if devices.is_empty() || world == 0 {
        bail!("--devices must be at least 1, and a device is needed");
    }
    if world == 1 {
        return train::<B>(run_dir, &devices[0]);
    }
    let results = run_local_peers::<B::InnerBackend, _, _>(world, devices, |comm| {
        let device = devices[comm.rank() % devices.len()].clone();
        run_rank::<B, _>(run_dir, &device, &comm)
    })?;
    first_failure(results)
}

/// The same as one rank of a group of processes described by `launch` (torchrun's
/// environment: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, ...), on `device`. With `new`, the
/// run is a new one with that configuration: rank 0 creates `run_dir` ([`create_run`]) and the
/// other ranks wait for it; without, `run_dir` holds the run to continue.
///
/// Only rank 0 can tell a folder it has just created from one left by an earlier run, so it
/// decides alone, before joining the group, and the verdict travels through the group's first
/// exchange: when rank 0 refuses the folder (not empty, missing data), every rank stops at once
/// with its message instead of waiting for a rank 0 that is gone.
pub fn train_launched<B: AutodiffBackend>(
    run_dir: &Path,
    new: Option<&TrainConfig>,
    launch: &Launch,
    device: &B::Device,
) -> Result<RunSummary> {
    let created = match new {
        Some(config) if launch.rank == 0 => create_run(config, run_dir),
        _ => Ok(()),
    };
    let comm = match BurnCollective::<B::InnerBackend>::global(launch, device.clone()) {
        Ok(comm) => comm,
        // Rank 0's refusal explains more than the failed rendezvous it leads to.
        Err(err) => return created.and(Err(err.into())),
    };
    lead_decides(&comm, device, created)?;
    if new.is_some() && launch.rank > 0 {
        wait_for_run(run_dir)?;
    }
    run_rank::<B, _>(run_dir, device, &comm)
}

/// Waits (up to ten minutes) until `dir`'s configuration, which rank 0 has written, is visible
/// here: a shared file system may show a new file late.
fn wait_for_run(dir: &Path) -> Result<()> {
    let config = dir.join(CONFIG_FILE);
    let start = Instant::now();
    while !config.is_file() {
        if start.elapsed() > std::time::Duration::from_secs(600) {
            bail!(
                "{} did not appear within 10 minutes: rank 0 creates the run folder, and every \
                 rank must see it (a shared file system)",
                config.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}

/// The run, as seen by one rank. Rank 0 prints, logs metrics and writes the report.
fn run_rank<B: AutodiffBackend, C: Collective<B::InnerBackend>>(
    run_dir: &Path,
    device: &B::Device,
    comm: &C,
) -> Result<RunSummary> {
    let config = TrainConfig::read_resolved(&run_dir.join(CONFIG_FILE))?;
    let (rank, world) = (comm.rank(), comm.world_size());
    let lead = rank == 0;
    let seed = config.run.seed;
    let rendered = if lead {
        render_synthetic(&config, run_dir)
    } else {
        Ok(())
    };
    agree(comm, device, rendered)?;
    let data = agree(comm, device, open_data(&config, run_dir, rank, world))?;
    let loader = data.loader;
    let accumulation = config.optim.gradient_accumulation;
    let batches_per_epoch = loader.batches_per_epoch();
    let schedule = Schedule::new(&config, (batches_per_epoch / accumulation) as u64);
    if schedule.steps_per_epoch == 0 {
        bail!(
            "one step takes data.batch_size · optim.gradient_accumulation · ranks = {} · {} · \
             {world} images, more than the {} training images",
            config.data.batch_size,
            accumulation,
            data.images
        );
    }
    let curriculum = config.loss.curriculum.init();
    let shard = ClassShard::new(rank, world, data.classes);

    let mut model = init_model::<B>(&config, shard, device);
    let mut optim: Optim<B> = init_optimizer(&config.optim);
    let mut bank =
        config
            .loss
            .prototypes
            .init::<B>(shard.num_local(), config.vit.num_features, device);
    let mut state = TrainState {
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        phase: 0,
        steps_per_epoch: schedule.steps_per_epoch,
        classes: data.classes,
        seed,
        loss: f64::NAN,
        world_size: world,
        centre_steps: 0,
        skipped: 0,
        margins: MarginState::default(),
    };
    let latest = checkpoint::latest(run_dir)?;
    if latest.is_none() {
        if let Some(file) = crate::finetune::backbone_source(&config)? {
            model.backbone = crate::finetune::start(&config, model.backbone)?;
            if lead {
                println!(
                    "starting the backbone from {} (finetune.backbone); the classification \
                     layer and the prototype bank start fresh for {} classes",
                    file.display(),
                    data.classes
                );
                // The "before" of the report: the starting weights on the run's own pairs.
                let backbone = model.backbone.valid();
                let (reports, _) =
                    report::verify_sets(&backbone, &data.pairs, &config, device, false)?;
                if !reports.is_empty() {
                    report::append_eval(run_dir, 0, 0, &reports)?;
                    println!("the starting backbone:");
                    report::print_table(&reports, &[], &[]);
                }
            }
        }
    }
    if let Some(dir) = latest {
        let loaded = checkpoint::load(&dir, shard, model, optim, &mut bank, device)
            .with_context(|| format!("cannot resume from checkpoint {}", dir.display()));
        (state, model, optim) = agree(comm, device, loaded)?;
        state = resumed_state(state, &dir, &schedule, data.classes, world)?;
        if lead {
            println!("resuming at step {} from {}", state.step, dir.display());
        }
    }
    model.backbone = crate::finetune::freeze(&config.finetune, model.backbone);
    check_same_weights::<B, _, _>(&model.backbone, comm)?;
    let mut metrics = if lead {
        Some(report::open_metrics(run_dir, state.step)?)
    } else {
        None
    };
    let mut progress = Progress::new(schedule.total_steps, state.step);

    if lead {
        println!(
            "training {} classes, {} images, {} steps ({} per epoch, {} epochs), batch {} on \
             each of {world} rank(s){}",
            data.classes,
            data.images,
            schedule.total_steps,
            schedule.steps_per_epoch,
            config.loss.curriculum.epochs,
            config.data.batch_size,
            if accumulation > 1 {
                format!(", {accumulation} batches per step")
            } else {
                String::new()
            }
        );
    }
    let mut losses = Vec::new();
    let mut window = (Instant::now(), 0usize);
    let mut skipped_in_a_row = 0;
    let mut interrupted = false;
    // A run that already stopped at `run.stop_at_step` is being resumed: go on to the end.
    let stop_at = match config.run.stop_at_step {
        n if n > state.step => n.min(schedule.total_steps),
        _ => schedule.total_steps,
    };
    while state.step < stop_at {
        let epoch = schedule.epoch_of(state.step);
        let phase_index = curriculum.phase_index(epoch as usize);
        let phase = curriculum.config().phases[phase_index];
        let plan = StepPlan {
            pfc: PartialFcConfig {
                sample_rate: if phase.sampling {
                    phase.sample_rate
                } else {
                    1.0
                },
                seed,
            }
            .init(rank, world, data.classes)?,
            phase,
            loss: &config.loss,
            clip_norm: config.optim.clip_norm,
            accumulate: config.optim.accumulate,
            finetune: &config.finetune,
            seed,
            comm,
        };
        let phase_name = if phase.prototypes { "stable" } else { "early" };
        let done_in_epoch = state.step - epoch * schedule.steps_per_epoch;
        let mut epoch_batches = loader
            .epoch(epoch)
            .skip(done_in_epoch as usize * accumulation);
        for _ in done_in_epoch..schedule.steps_per_epoch {
            let step = state.step;
            let batches = (&mut epoch_batches)
                .take(accumulation)
                .map(|b| b.map_err(anyhow::Error::from))
                .collect::<Result<Vec<_>>>()
                .and_then(|batches| match batches.len() {
                    n if n == accumulation => Ok(batches),
                    n => bail!(
                        "the loader gave {n} of the {accumulation} batches of step {step} \
                         (epoch {epoch})"
                    ),
                });
            let batches =
                agree(comm, device, batches).map_err(|e| at_step(e, step + 1, run_dir))?;
            crate::source::log_skips(&loader, rank);
            let lr = schedule.lr(step);
            let outcome;
            (model, outcome) = plan
                .run(
                    model,
                    &mut optim,
                    &mut bank,
                    &mut state.margins,
                    &batches,
                    step,
                    lr,
                )
                .map_err(|e| at_step(e, step + 1, run_dir))?;
            let (loss_value, grad_norm) = match outcome {
                Outcome::Done { loss, grad_norm } => {
                    skipped_in_a_row = 0;
                    (loss, grad_norm)
                }
                Outcome::NonFinite(what) => {
                    let last = checkpoint::latest(run_dir)?
                        .map_or("none yet".into(), |d| d.display().to_string());
                    let at = format!("step {} (epoch {epoch}, phase {phase_index})", step + 1);
                    skipped_in_a_row += 1;
                    if config.run.nonfinite == NonFinitePolicy::Stop
                        || skipped_in_a_row > config.run.skip_limit
                    {
                        bail!(
                            "{what} at {at}; stopped ({}), the last good checkpoint is {last}",
                            if config.run.nonfinite == NonFinitePolicy::Stop {
                                "run.nonfinite = \"stop\"".to_string()
                            } else {
                                format!(
                                    "more than run.skip_limit = {} in a row",
                                    config.run.skip_limit
                                )
                            }
                        );
                    }
                    state.skipped += 1;
                    if lead {
                        println!("skipping {at}: {what} (run.nonfinite = \"skip\")");
                    }
                    (f64::NAN, f64::NAN)
                }
            };

            state = TrainState {
                step: step + 1,
                epoch: schedule.epoch_of(step + 1),
                batch_in_epoch: (step + 1) % schedule.steps_per_epoch,
                phase: phase_index,
                loss: loss_value,
                ..state
            };
            losses.push((state.step, loss_value));
            window.1 += batches.iter().map(|b| b.len()).sum::<usize>() * world;
            let images_per_s = window.1 as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
            if let Some(metrics) = metrics.as_mut() {
                writeln!(
                    metrics,
                    "{}",
                    serde_json::json!({
                        "step": state.step, "epoch": epoch, "phase": phase_index,
                        "loss": finite_or_null(loss_value), "lr": lr,
                        "grad_norm": finite_or_null(grad_norm), "images_per_s": images_per_s,
                    })
                )?;
            }
            if lead && (state.step % config.run.log_every == 0 || state.step == stop_at) {
                println!(
                    "{}",
                    progress.line(
                        state.step,
                        epoch,
                        phase_name,
                        loss_value,
                        lr,
                        grad_norm,
                        images_per_s
                    )
                );
                window = (Instant::now(), 0);
            }
            let every = config.run.checkpoint_every;
            let epoch_end = state.batch_in_epoch == 0;
            interrupted = state.step < stop_at
                && any_rank_asked_to_stop(comm, device)
                    .map_err(|e| at_step(e, step + 1, run_dir))?;
            let due = epoch_end || (every > 0 && state.step % every == 0) || state.step == stop_at;
            if due || interrupted {
                checkpoint::save(
                    run_dir,
                    &state,
                    shard,
                    &model,
                    &optim,
                    &bank,
                    config.run.keep_checkpoints,
                    comm,
                )
                .map_err(|e| at_step(e, state.step, run_dir))?;
            }
            if interrupted {
                if lead {
                    println!(
                        "stopping at step {} as asked (SIGTERM or SIGINT); the checkpoint is \
                         written",
                        state.step
                    );
                }
                break;
            }
            let eval_every = config.eval.every_epochs;
            let last = state.step == schedule.total_steps;
            if lead && epoch_end && eval_every > 0 && state.epoch % eval_every == 0 && !last {
                let backbone = model.backbone.valid();
                let (reports, _) =
                    report::verify_sets(&backbone, &data.pairs, &config, device, false)?;
                report::append_eval(run_dir, state.step, state.epoch, &reports)?;
                report::print_table(&reports, &[], &[]);
                window = (Instant::now(), 0);
            }
            if state.step == stop_at {
                break;
            }
        }
        if let Some(metrics) = metrics.as_mut() {
            metrics.flush()?;
        }
        if interrupted {
            break;
        }
    }
    let finished = state.step == schedule.total_steps;
    let skipped_images = crate::ranks::total(comm, device, loader.skipped())?;
    let mut summary = RunSummary {
        steps: state.step,
        losses,
        finished,
        interrupted,
        verification: Vec::new(),
        pixel_baseline: Vec::new(),
        start_accuracy: Vec::new(),
    };
    if lead {
        if finished {
            let backbone = model.backbone.valid();
            let (verification, pixels) =
                report::verify_sets(&backbone, &data.pairs, &config, device, true)?;
            report::append_eval(run_dir, state.step, state.epoch, &verification)?;
            summary.verification = verification;
            summary.pixel_baseline = pixels;
            summary.start_accuracy = report::start_accuracy(run_dir)?;
            report::print_table(
                &summary.verification,
                &summary.pixel_baseline,
                &summary.start_accuracy,
            );
            report::write_report(run_dir, &summary, state.skipped, skipped_images)?;
        }
        let plots = report::write_curves(run_dir)?;
        if let Some(loss_png) = plots.first() {
            println!("curves: {}", loss_png.with_file_name("*.png").display());
        }
    }
    Ok(summary)
}

/// A fresh model for `shard`: the backbone is the same on every rank (seeded by `run.seed`),
/// each centre shard is drawn from its own stream.
pub(crate) fn init_model<B: AutodiffBackend>(
    config: &TrainConfig,
    shard: ClassShard,
    device: &B::Device,
) -> TrainModel<B> {
    let _generator = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    B::seed(device, config.run.seed);
    // burn draws a parameter's initial values when it is first used; draw them now, while
    // this rank holds the generator, or in-process ranks would start from different weights.
    let backbone = initialized(config.vit.init(device));
    B::seed(
        device,
        step_seed(config.run.seed ^ CENTRES_STREAM, shard.rank as u64),
    );
    TrainModel::new(backbone, shard.num_local(), config.vit.num_features, device)
}

/// Seeds the centre shards' streams apart from the backbone's.
const CENTRES_STREAM: u64 = 0x6365_6e74_7265_7300;

/// `module` with every parameter's lazy initialisation done.
fn initialized<B: Backend, M: Module<B>>(module: M) -> M {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
    module
}

/// The state a checkpoint resumes at. On the ranks it was written with, as saved; on another
/// number of ranks the steps per epoch change, so only an epoch end can be continued, at the
/// start of the next epoch.
fn resumed_state(
    state: TrainState,
    dir: &Path,
    schedule: &Schedule,
    classes: usize,
    world: usize,
) -> Result<TrainState> {
    if state.classes != classes {
        bail!(
            "checkpoint {} was taken with {} classes, the data now gives {classes}",
            dir.display(),
            state.classes
        );
    }
    if state.world_size == world {
        if state.steps_per_epoch != schedule.steps_per_epoch {
            bail!(
                "checkpoint {} was taken with {} steps per epoch, the data and configuration \
                 now give {}",
                dir.display(),
                state.steps_per_epoch,
                schedule.steps_per_epoch
            );
        }
        return Ok(state);
    }
    if state.batch_in_epoch != 0 {
        bail!(
            "checkpoint {} was taken on {} rank(s) in the middle of epoch {}; a run continues \
             on {world} rank(s) only from an epoch end (resume on {0} rank(s), or from an \
             epoch-end checkpoint)",
            dir.display(),
            state.world_size,
            state.epoch
        );
    }
    Ok(TrainState {
        step: state.epoch * schedule.steps_per_epoch,
        steps_per_epoch: schedule.steps_per_epoch,
        world_size: world,
        ..state
    })
}

fn finite_or_null(value: f64) -> serde_json::Value {
    if value.is_finite() {
        value.into()
    } else {
        serde_json::Value::Null
    }
}

/// The backend seed of stream `step`: SplitMix64 of the pair, so that masking and drop path of a
/// batch do not depend on how many batches this process ran before it.
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

/// Renders the synthetic training set and its verification pairs into `RUN_DIR/data/` the
/// first time (nothing when the run trains on `data.rec`).
fn render_synthetic(config: &TrainConfig, run_dir: &Path) -> Result<()> {
    let dir = run_dir.join("data");
    if !config.data.rec.is_empty() || dir.exists() {
        return Ok(());
    }
    let tmp = run_dir.join("data.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let faces = SyntheticFaces::new(config.data.synthetic.clone())?;
    let (images, classes) = faces.write_rec(&tmp)?;
    faces.write_bin(&tmp.join(SYNTHETIC_PAIRS))?;
    faces.write_masked_bin(&tmp.join(SYNTHETIC_MASKED_PAIRS))?;
    std::fs::rename(&tmp, &dir)?;
    println!(
        "rendered {images} synthetic images of {classes} identities into {}",
        dir.display()
    );
    Ok(())
}

/// The training set (rank `rank`'s share of it) and the verification pair sets.
fn open_data(config: &TrainConfig, run_dir: &Path, rank: usize, world: usize) -> Result<Data> {
    let mut pairs = Vec::new();
    let (source, classes): (Arc<dyn FaceSource>, usize) = if config.data.rec.is_empty() {
        let dir = run_dir.join("data");
        let bin = dir.join(SYNTHETIC_PAIRS);
        if config.eval.synthetic_pairs && config.data.synthetic.pairs > 0 {
            pairs.push(("synthetic".to_string(), BinPairs::read(&bin)?));
            let masked = dir.join(SYNTHETIC_MASKED_PAIRS);
            // Run folders rendered before masked pairs existed have none.
            if masked.is_file() {
                pairs.push(("synthetic-masked".to_string(), BinPairs::read(&masked)?));
            }
        }
        let source = RecordDataset::open(&dir)?;
        let classes = source
            .num_classes()
            .with_context(|| format!("{} does not say how many classes it has", dir.display()))?;
        (Arc::new(source), classes)
    } else {
        open_training_source(&config.data.rec)?
    };
    check_class_count(classes, &run_dir.join("data").display().to_string())?;
    for bin in &config.eval.bins {
        let name = crate::evaluate::set_name(Path::new(bin));
        let set = BinPairs::read(Path::new(bin)).with_context(|| format!("eval.bins: {bin}"))?;
        pairs.push((name, set));
    }
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
        loader: Loader::new(source, loader_config, rank, world)?,
        classes,
        images,
        pairs,
    })
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
