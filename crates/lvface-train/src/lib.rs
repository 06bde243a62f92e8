//! The lvface training pipeline: layered configuration ([`TrainConfig`]), the LVFace curriculum
//! loop on one device ([`train`]), on in-process ranks ([`train_local`]) or as one rank of
//! launched processes ([`train_launched`]) with the classifier sharded by lvface-pfc, atomic
//! (sharded) checkpoints, verification during and after training, and the
//! evaluation of a run's latest checkpoint, a weights file or embeddings computed elsewhere
//! on `.bin` pair sets ([`evaluate_bin`], [`evaluate_embeddings_file`]). The `lvface-train`
//! binary wraps it and picks the backend; [`with_autodiff!`] picks its autodiff strategy from
//! `vit.grad_checkpoint`.
//!
//! Invariants:
//! - This is the only crate that knows TOML or the `config` crate; the others receive their own
//!   typed config structs.
//! - A run folder holds the resolved `config.toml`, `metrics.jsonl`, `eval.jsonl`,
//!   `checkpoints/`, the curves and, once finished, `report.json` (and `eval/` once evaluated); a
//!   run continues from its folder alone.
//! - On CPU a run is a function of its configuration and rank count: every random draw derives
//!   from `run.seed` and the batch and rank (or the epoch and sample), so a resumed run repeats
//!   an uninterrupted one.
//!
//! ```ignore
//! use lvface_train::{create_run, train, Experiment, TrainConfig};
//! let config = TrainConfig::load(&Experiment::Default, &["optim.lr=5e-4".into()])?;
//! create_run(&config, "runs/demo".as_ref())?;
//! let summary = train::<Autodiff<Flex>>("runs/demo".as_ref(), &device)?;
//! ```

mod autodiff;
pub mod checkpoint;
mod clip;
mod config;
mod embed;
mod evaluate;
mod finetune;
mod model;
pub mod optim;
mod plots;
mod progress;
mod ranks;
mod report;
mod run_data;
mod run_folder;
mod schedule;
mod seeds;
mod source;
mod start;
mod step;
mod step_log;
mod stop;
mod throughput;
mod train;
mod verify;

pub use autodiff::{CheckpointedAutodiff, PlainAutodiff};
pub use clip::clip_global_norm;
pub use config::{
    Accumulate, DataConfig, EvalConfig, Experiment, LossConfig, NonFinitePolicy, OptimConfig,
    RunConfig, ScheduleKind, TrainConfig, BASE, DEFAULT,
};
pub use embed::{
    cosine, embed_faces, read_face, threshold_from_report, write_npy, EmbedOptions, Face,
    ReportThreshold,
};
pub use evaluate::{
    evaluate_bin, evaluate_embeddings_file, evaluate_ijb_target, ijb_targets, set_name, EvalModel,
    ModelSource, DEFAULT_EVAL_BATCH,
};
pub use finetune::backbone_source;
pub use model::TrainModel;
pub use plots::{write_curves, PLOT_SIZE};
pub use progress::{bar, format_eta, Progress};
pub use ranks::PeerFailed;
pub use run_folder::{fresh_run_dir, RunSummary, CONFIG_FILE, EVAL_FILE, METRICS_FILE};
pub use schedule::Schedule;
pub use seeds::step_seed;
pub use source::{check_training_source, open_training_source};
pub use stop::{stop_on_signals, stop_requested, STOPPED_EXIT_CODE};
pub use throughput::{time_train_steps, StepTiming};
pub use train::{
    create_run, train, train_launched, train_launched_with, train_local, train_local_with,
};
pub use verify::{embed_pairs, pixel_baseline, verification, PairEmbeddings};
