//! Where a rank's run starts: a fresh model, optimizer, prototype bank and state; with
//! `finetune.backbone`, the starting weights (verified on the run's pairs, the report's
//! "before"); or, when the run has a checkpoint, that checkpoint, on the same or another number
//! of ranks. The finetune keys' freezing is applied last, whichever it was.
// The run's first lines (where it starts from) go to stdout.
#![allow(clippy::print_stdout)]

use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use lvface_loss::PrototypeBank;
use lvface_pfc::{ClassShard, Collective};

use crate::checkpoint::{self, MarginState, TrainState};
use crate::config::TrainConfig;
use crate::model::{init_model, TrainModel};
use crate::optim::{init_optimizer, Optim};
use crate::ranks::agree;
use crate::report;
use crate::run_data::RunData;
use crate::schedule::Schedule;

/// What a rank trains from.
pub(crate) struct Start<B: AutodiffBackend> {
    pub model: TrainModel<B>,
    pub optim: Optim<B>,
    pub bank: PrototypeBank<B>,
    pub state: TrainState,
}

/// The model, optimizer, bank and state rank `comm.rank()` starts the run in `run_dir` with.
pub(crate) fn start_rank<B: AutodiffBackend, C: Collective<B::InnerBackend>>(
    config: &TrainConfig,
    run_dir: &Path,
    data: &RunData,
    schedule: &Schedule,
    shard: ClassShard,
    device: &B::Device,
    comm: &C,
) -> Result<Start<B>> {
    let (lead, world) = (comm.rank() == 0, comm.world_size());
    config.vit.check_device::<B>(device)?;
    let seed = config.run.seed;
    let mut model = init_model::<B>(config, shard, device);
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
        if let Some(file) = crate::finetune::backbone_source(config)? {
            model.backbone = crate::finetune::start(config, model.backbone)?;
            if lead {
                println!(
                    "starting the backbone from {} (finetune.backbone); the classification \
                     layer and the prototype bank start fresh for {} classes",
                    file.display(),
                    data.classes
                );
            }
            // The "before" of the report: the starting weights on the run's own pairs, once (a
            // run that stopped before its first checkpoint has them already).
            if lead && report::start_accuracy(run_dir)?.is_empty() {
                let backbone = model.backbone.valid();
                let (reports, _) =
                    report::verify_sets(&backbone, &data.pairs, config, device, false)?;
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
        state = resumed_state(state, &dir, schedule, data.classes, world)?;
        if lead {
            println!("resuming at step {} from {}", state.step, dir.display());
        }
    }
    model.backbone = crate::finetune::freeze(&config.finetune, model.backbone);
    Ok(Start {
        model,
        optim,
        bank,
        state,
    })
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
