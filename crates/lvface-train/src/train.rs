//! The training run: data, backbone, classification layer with the curriculum's phase, AdamW
//! with the per-step schedule, global-norm clipping, checkpoints, and verification at the end.
// The run reports progress on stdout, one line every `run.log_every` steps.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::module::{AutodiffModule, Module};
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;
use lvface_data::Batch;
use lvface_pfc::{run_peers, BurnCollective, ClassShard, Collective, Launch, Solo};
use lvface_vit::Vit;

use crate::checkpoint::{self, TrainState};
use crate::config::{NonFinitePolicy, TrainConfig};
use crate::ranks::{agree, check_same_weights, first_failure, lead_decides};
use crate::report;
use crate::run_data::{open_data, render_synthetic, RunData};
use crate::run_folder::{RunSummary, CONFIG_FILE};
use crate::schedule::Schedule;
use crate::source::check_training_source;
use crate::start::{start_rank, Start};
use crate::step::{Outcome, StepPlan};
use crate::step_log::{StepFigures, StepLog};
use crate::stop::{any_rank_asked_to_stop, at_step};

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
    train_local_with::<B, _>(run_dir, devices, world, |rank, device| {
        BurnCollective::<B::InnerBackend>::local(rank, world, device)
    })
}

/// [`train_local`] with each rank's collective made by `join(rank, device)` on the rank's
/// thread (NCCL on CUDA, for one); one rank alone trains without one.
pub fn train_local_with<B, C>(
    run_dir: &Path,
    devices: &[B::Device],
    world: usize,
    join: impl Fn(usize, B::Device) -> lvface_pfc::Result<C> + Sync,
) -> Result<RunSummary>
where
    B: AutodiffBackend,
    C: Collective<B::InnerBackend>,
{
    if devices.is_empty() || world == 0 {
        bail!("--devices must be at least 1, and a device is needed");
    }
    if world == 1 {
        return train::<B>(run_dir, &devices[0]);
    }
    let results = run_peers(world, devices, join, |comm: C| {
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
    train_launched_with::<B, _>(run_dir, new, launch, device, Ok)
}

/// [`train_launched`] with the group's collective replaced by `upgrade(ring)` once the ranks
/// have met over the TCP ring and agreed on the run folder (NCCL on CUDA, whose id travels over
/// the ring, for one).
pub fn train_launched_with<B, C>(
    run_dir: &Path,
    new: Option<&TrainConfig>,
    launch: &Launch,
    device: &B::Device,
    upgrade: impl FnOnce(BurnCollective<B::InnerBackend>) -> lvface_pfc::Result<C>,
) -> Result<RunSummary>
where
    B: AutodiffBackend,
    C: Collective<B::InnerBackend>,
{
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
    let comm = upgrade(comm)?;
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
    let rendered = if lead {
        render_synthetic(&config, run_dir)
    } else {
        Ok(())
    };
    agree(comm, device, rendered)?;
    let data = agree(comm, device, open_data(&config, run_dir, rank, world))?;
    let loader = &data.loader;
    let accumulation = config.optim.gradient_accumulation;
    let schedule = Schedule::new(&config, (loader.batches_per_epoch() / accumulation) as u64);
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
    let Start {
        mut model,
        mut optim,
        mut bank,
        mut state,
    } = start_rank::<B, C>(&config, run_dir, &data, &schedule, shard, device, comm)?;
    check_same_weights::<B, _, _>(&model.backbone, comm)?;
    // A run that already stopped at `run.stop_at_step` is being resumed: go on to the end.
    let stop_at = match config.run.stop_at_step {
        n if n > state.step => n.min(schedule.total_steps),
        _ => schedule.total_steps,
    };
    let steps = (state.step, stop_at, schedule.total_steps);
    let announcement = announcement(&config, &data, &schedule, world);
    let mut log = StepLog::open(run_dir, lead, steps, config.run.log_every, &announcement)?;
    let mut skipped_in_a_row = 0;
    let mut interrupted = false;

    while state.step < stop_at && !interrupted {
        let epoch = schedule.epoch_of(state.step);
        let phase_index = curriculum.phase_index(epoch as usize);
        let phase = curriculum.config().phases[phase_index];
        let plan = StepPlan::for_phase(&config, phase, (rank, world, data.classes), comm)?;
        let phase_name = if phase.prototypes { "stable" } else { "early" };
        let done_in_epoch = state.step - epoch * schedule.steps_per_epoch;
        let mut epoch_batches = loader
            .epoch(epoch)
            .skip(done_in_epoch as usize * accumulation);
        for _ in done_in_epoch..schedule.steps_per_epoch {
            let step = state.step;
            let batches = next_batches(&mut epoch_batches, accumulation, step, epoch);
            let batches =
                agree(comm, device, batches).map_err(|e| at_step(e, step + 1, run_dir))?;
            crate::source::log_skips(loader, rank);
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
            let (loss, grad_norm) = match outcome {
                Outcome::Done { loss, grad_norm } => {
                    skipped_in_a_row = 0;
                    (loss, grad_norm)
                }
                Outcome::NonFinite(what) => {
                    let at = format!("step {} (epoch {epoch}, phase {phase_index})", step + 1);
                    skipped_in_a_row += 1;
                    skip_or_stop(&config, run_dir, &what, &at, skipped_in_a_row)?;
                    state.skipped += 1;
                    if lead {
                        log.suspend(|| {
                            println!("skipping {at}: {what} (run.nonfinite = \"skip\")")
                        });
                    }
                    (f64::NAN, f64::NAN)
                }
            };
            state = TrainState {
                step: step + 1,
                epoch: schedule.epoch_of(step + 1),
                batch_in_epoch: (step + 1) % schedule.steps_per_epoch,
                phase: phase_index,
                loss,
                ..state
            };
            log.record(&StepFigures {
                step: state.step,
                epoch,
                phase: (phase_index, phase_name),
                loss,
                lr,
                grad_norm,
                images: batches.iter().map(|b| b.len()).sum::<usize>() * world,
            })?;

            let epoch_end = state.batch_in_epoch == 0;
            interrupted = state.step < stop_at
                && any_rank_asked_to_stop(comm, device)
                    .map_err(|e| at_step(e, step + 1, run_dir))?;
            let every = config.run.checkpoint_every;
            let due = epoch_end || (every > 0 && state.step % every == 0) || state.step == stop_at;
            if due || interrupted {
                let keep = config.run.keep_checkpoints;
                checkpoint::save(run_dir, &state, shard, &model, &optim, &bank, keep, comm)
                    .map_err(|e| at_step(e, state.step, run_dir))?;
            }
            if interrupted {
                break;
            }
            let eval_every = config.eval.every_epochs;
            let last = state.step == schedule.total_steps;
            if lead && epoch_end && eval_every > 0 && state.epoch % eval_every == 0 && !last {
                let backbone = model.backbone.valid();
                let (reports, _) =
                    report::verify_sets(&backbone, &data.pairs, &config, device, false)?;
                report::append_eval(run_dir, state.step, state.epoch, &reports)?;
                log.suspend(|| report::print_table(&reports, &[], &[]));
                log.restart_window();
            }
            if state.step == stop_at {
                break;
            }
        }
        log.flush()?;
    }
    let losses = log.finish()?;
    if interrupted && lead {
        println!(
            "stopping at step {} as asked (SIGTERM or SIGINT); the checkpoint is written",
            state.step
        );
    }
    let skipped_images = crate::ranks::total(comm, device, loader.skipped())?;
    let mut summary = RunSummary {
        steps: state.step,
        losses,
        finished: state.step == schedule.total_steps,
        interrupted,
        verification: Vec::new(),
        pixel_baseline: Vec::new(),
        start_accuracy: Vec::new(),
    };
    if lead {
        let backbone = model.backbone.valid();
        conclude(
            run_dir,
            &config,
            &data,
            &backbone,
            &state,
            skipped_images,
            &mut summary,
        )?;
    }
    Ok(summary)
}

/// The end of a run on rank 0: when it finished, the final verification (with the pixel
/// baseline and the starting accuracy of a fine-tuning run), its table and `report.json`; the
/// curves in every case.
fn conclude<B: Backend>(
    run_dir: &Path,
    config: &TrainConfig,
    data: &RunData,
    backbone: &Vit<B>,
    state: &TrainState,
    skipped_images: usize,
    summary: &mut RunSummary,
) -> Result<()> {
    if summary.finished {
        let device = backbone.devices().swap_remove(0);
        let (verification, pixels) =
            report::verify_sets(backbone, &data.pairs, config, &device, true)?;
        report::append_eval(run_dir, state.step, state.epoch, &verification)?;
        summary.verification = verification;
        summary.pixel_baseline = pixels;
        summary.start_accuracy = report::start_accuracy(run_dir)?;
        report::print_table(
            &summary.verification,
            &summary.pixel_baseline,
            &summary.start_accuracy,
        );
        report::write_report(run_dir, summary, state.skipped, skipped_images)?;
    }
    let plots = report::write_curves(run_dir)?;
    if let Some(loss_png) = plots.first() {
        println!("curves: {}", loss_png.with_file_name("*.png").display());
    }
    Ok(())
}

/// The run's first line: what it trains on, for how long, and how.
fn announcement(config: &TrainConfig, data: &RunData, schedule: &Schedule, world: usize) -> String {
    let accumulation = config.optim.gradient_accumulation;
    format!(
        "training {} classes, {} images, {} steps ({} per epoch, {} epochs), batch {} on each \
         of {world} rank(s){}",
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
    )
}

/// The `accumulation` micro-batches of `step`, or an error saying how many the loader gave.
fn next_batches(
    batches: &mut impl Iterator<Item = lvface_data::Result<Batch>>,
    accumulation: usize,
    step: u64,
    epoch: u64,
) -> Result<Vec<Batch>> {
    let batches = batches
        .take(accumulation)
        .map(|b| b.map_err(anyhow::Error::from))
        .collect::<Result<Vec<_>>>()?;
    match batches.len() {
        n if n == accumulation => Ok(batches),
        n => bail!(
            "the loader gave {n} of the {accumulation} batches of step {step} (epoch {epoch})"
        ),
    }
}

/// Whether a step that was not finite (`what`, at `at`) stops the run: always with
/// `run.nonfinite = "stop"`, and with "skip" once `in_a_row` passes `run.skip_limit`. The error
/// names the last good checkpoint.
fn skip_or_stop(
    config: &TrainConfig,
    run_dir: &Path,
    what: &str,
    at: &str,
    in_a_row: u64,
) -> Result<()> {
    let stop = config.run.nonfinite == NonFinitePolicy::Stop;
    if !stop && in_a_row <= config.run.skip_limit {
        return Ok(());
    }
    let last = checkpoint::latest(run_dir)?.map_or("none yet".into(), |d| d.display().to_string());
    let why = if stop {
        "run.nonfinite = \"stop\"".to_string()
    } else {
        format!(
            "more than run.skip_limit = {} in a row",
            config.run.skip_limit
        )
    };
    bail!("{what} at {at}; stopped ({why}), the last good checkpoint is {last}")
}
