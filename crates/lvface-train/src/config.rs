//! [`TrainConfig`]: every setting of a run, one table per concern, read in layers.
//!
//! Layers, later ones winning: the built-in `configs/base.toml` (every default), an experiment
//! file (`configs/default.toml` when none is given), `LVFACE_<TABLE>__<KEY>` environment
//! variables (`LVFACE_OPTIM__LR=1e-3`: levels separated by `__`; see [`ENV_PREFIX`] for which
//! variables count), then `--set key=value` overrides. The result is checked once by
//! [`TrainConfig::validate`], whose errors name the key and the value.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use config::{Config, Environment, File, FileFormat, Value, ValueKind};
use lvface_data::{AugmentConfig, CorruptPolicy, SyntheticConfig};
use lvface_eval::VerificationConfig;
use lvface_loss::{CurriculumConfig, PrototypeBankConfig};
use lvface_pfc::ShardSoftmax;
use lvface_vit::VitConfig;
use serde::{Deserialize, Serialize};

/// `configs/base.toml`, compiled in so that a run needs no file on disk.
pub const BASE: &str = include_str!("../../../configs/base.toml");
/// `configs/default.toml`: the CPU demo on synthetic identities, the experiment without `--config`.
pub const DEFAULT: &str = include_str!("../../../configs/default.toml");

/// The prefix of lvface's environment variables. Only those with `__` after it
/// (`LVFACE_<TABLE>__<KEY>`) are configuration: every key lives in a table, so each such
/// variable has one. lvface's other variables, such as the launch's `LVFACE_NODE_ADDR` (read by
/// lvface-pfc's `Launch`) or the benchmarks' `LVFACE_BENCH_*`, separate words with single `_`
/// and do not start with a table name, so they never reach the configuration: a launch sets them
/// on every rank, and a deployment may export them globally. A variable without `__` that starts
/// with a table name (`LVFACE_OPTIM_LR`) is refused as a misspelt key rather than ignored.
const ENV_PREFIX: &str = "LVFACE_";

/// The top-level tables of [`TrainConfig`], lower case.
const TABLES: [&str; 7] = ["vit", "loss", "data", "optim", "run", "eval", "finetune"];

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The backbone.
    pub vit: VitConfig,
    /// Classification losses and the curriculum.
    pub loss: LossConfig,
    /// Training data and its loader.
    pub data: DataConfig,
    /// AdamW, the learning-rate schedule, gradient clipping.
    pub optim: OptimConfig,
    /// Seeds, checkpoints, logging.
    pub run: RunConfig,
    /// Verification at the end of the run.
    pub eval: EvalConfig,
    /// Where the backbone starts (absent in run folders written before the table existed).
    #[serde(default)]
    pub finetune: FinetuneConfig,
}

/// Starting from a trained backbone instead of random weights, and what of it trains.
///
/// Every key is part of the run's resolved configuration, which a resumed run reads back, so
/// resume continues with the same freezing, multiplier and warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneConfig {
    /// Weights the backbone starts from: a `.pt`/`.pth` state_dict as insightface and LVFace
    /// ship them, a `.safetensors` file with insightface's names, or an lvface run folder (its
    /// latest checkpoint's backbone). Empty: random initialisation. The classification layer
    /// and the prototype bank always start fresh, for the new data's classes.
    pub backbone: String,
    /// The backbone's learning rate as a multiple of the schedule's (the centres take the
    /// schedule's own).
    pub backbone_lr_scale: f64,
    /// Keep the patch embedding and the position embedding as they start.
    pub freeze_patch_embed: bool,
    /// Keep the first this many transformer blocks as they start, and with them the patch and
    /// position embeddings that feed them.
    pub frozen_blocks: usize,
    /// Keep the whole backbone as it starts, BatchNorm running statistics included: it embeds
    /// in inference mode (no masking, no drop path) and only the classification layer trains.
    pub freeze_backbone: bool,
    /// Optimizer steps at the start of the run during which the backbone is held as with
    /// `freeze_backbone` and only the classification layer trains.
    pub classifier_warmup_steps: u64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            backbone: String::new(),
            backbone_lr_scale: 1.0,
            freeze_patch_embed: false,
            frozen_blocks: 0,
            freeze_backbone: false,
            classifier_warmup_steps: 0,
        }
    }
}

impl FinetuneConfig {
    /// Whether the backbone is held (inference mode, no gradient) at optimizer step `step`
    /// (counting from 0).
    pub fn backbone_held(&self, step: u64) -> bool {
        self.freeze_backbone || step < self.classifier_warmup_steps
    }
}

/// The classification layer's losses, phase by phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    /// Epochs and phases: margin, negative sampling, prototypes.
    pub curriculum: CurriculumConfig,
    /// EMA prototypes, updated every step in every phase.
    pub prototypes: PrototypeBankConfig,
    /// Weight of the prototype cross-entropy in the stable stage.
    pub prototype_weight: f64,
    /// Weight the stable stage's target logit by the class's expectation length (Eq. 19).
    pub expectation_weighting: bool,
    /// How the combined margin softmax is computed.
    pub softmax: ShardSoftmax,
}

/// Where images come from and how they are batched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The training set: a folder holding insightface's `train.rec`, `train.idx` and
    /// `property` (or a `.rec` file), or an image folder with one sub-folder per identity (see
    /// [`open_training_source`](crate::open_training_source)); empty trains on synthetic
    /// identities rendered into the run folder.
    pub rec: String,
    /// The synthetic identities used when `rec` is empty.
    pub synthetic: SyntheticConfig,
    /// Images per step.
    pub batch_size: usize,
    /// Decoding threads.
    pub workers: usize,
    /// Batches decoded ahead.
    pub prefetch: usize,
    /// Failing on an image that does not decode, or skipping it: the next readable image of
    /// the epoch takes its place, so that batches stay full on every rank.
    pub on_corrupt: CorruptPolicy,
    /// Training augmentation.
    pub augment: AugmentConfig,
}

/// The learning-rate schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// `(1 - progress)^power`: train_v2's `PolynomialLRWarmup` at power 1, the older
    /// `PolyScheduler` at power 2.
    Poly,
    /// Half a cosine from the base rate to 0.
    Cosine,
}

/// Optimizer and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate, reached at the end of warm-up.
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW's first-moment decay.
    pub beta1: f64,
    /// AdamW's second-moment decay.
    pub beta2: f64,
    /// AdamW's epsilon.
    pub epsilon: f64,
    /// Linear warm-up length in epochs (may be fractional).
    pub warmup_epochs: f64,
    /// Decay after warm-up.
    pub schedule: ScheduleKind,
    /// Exponent of the polynomial decay.
    pub power: f64,
    /// Largest global L2 norm of the backbone's gradients; 0 turns clipping off.
    pub clip_norm: f64,
    /// Batches whose gradients go into one optimizer step: a step sees
    /// `data.batch_size · gradient_accumulation` images per rank.
    pub gradient_accumulation: usize,
    /// How the batches' gradients combine: summed, as insightface's `train_v2.py` does (its
    /// loss is not divided by the accumulation count, so the clip acts on the sum), or averaged.
    pub accumulate: Accumulate,
}

/// How the gradients of a step's batches combine (`optim.accumulate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accumulate {
    /// The sum of the batches' gradients (insightface's `train_v2.py`).
    Sum,
    /// Their mean: the gradient of the mean loss over the step's images.
    Mean,
}

impl Accumulate {
    /// The weight of each of `batches` batches' gradients.
    pub fn weight(self, batches: usize) -> f64 {
        match self {
            Accumulate::Sum => 1.0,
            Accumulate::Mean => 1.0 / batches as f64,
        }
    }
}

/// What a step whose loss or gradient is not finite does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NonFinitePolicy {
    /// Stop the run with an error naming the step, phase and last good checkpoint.
    Stop,
    /// Leave the step out (no update of weights, optimizer or prototypes) and go on; the run
    /// still stops after `run.skip_limit` such steps in a row.
    Skip,
}

/// Seeds, checkpoints and logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seed of initialisation, shuffling, augmentation, masking, drop path and sampling.
    pub seed: u64,
    /// Also checkpoint every this many steps (0: only at epoch ends).
    pub checkpoint_every: u64,
    /// Checkpoints kept; older ones are deleted.
    pub keep_checkpoints: usize,
    /// Print a progress line every this many steps.
    pub log_every: u64,
    /// Stop (after checkpointing) once this many steps are done; 0 runs to the end. A run
    /// stopped this way continues to the end with `--resume`.
    pub stop_at_step: u64,
    /// A step whose loss or gradient is NaN or infinite: `stop` or `skip`.
    pub nonfinite: NonFinitePolicy,
    /// With `nonfinite = "skip"`, the most such steps in a row before the run stops anyway.
    pub skip_limit: u64,
}

/// Verification at the end of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// insightface `.bin` pair sets to verify on.
    pub bins: Vec<String>,
    /// Also verify on the held-out synthetic pairs (synthetic data only): clean pairs, and the
    /// same pairs with the second face masked.
    pub synthetic_pairs: bool,
    /// Also verify every this many epochs during training (0: only at the end); the figures go
    /// to `eval.jsonl` and `accuracy.png`.
    pub every_epochs: u64,
    /// Images embedded at once.
    pub batch_size: usize,
    /// Also report the accuracy of raw pixels on the same pairs, as a floor.
    pub pixel_baseline: bool,
    /// The 10-fold protocol.
    pub verification: VerificationConfig,
}

/// Where the experiment layer comes from.
#[derive(Debug, Clone)]
pub enum Experiment {
    /// `configs/default.toml`, compiled in.
    Default,
    /// A file.
    File(PathBuf),
}

impl TrainConfig {
    /// Reads the layers (base, experiment, `LVFACE_<TABLE>__<KEY>` environment variables,
    /// `--set` overrides) and validates the result.
    pub fn load(experiment: &Experiment, sets: &[String]) -> Result<Self> {
        Self::load_with_env(experiment, sets, std::env::vars_os())
    }

    /// [`load`](Self::load), with the environment given as `(name, value)` pairs.
    pub(crate) fn load_with_env(
        experiment: &Experiment,
        sets: &[String],
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Self> {
        let mut builder =
            Config::builder().add_source(File::from_str(BASE, FileFormat::Toml).required(true));
        builder = match experiment {
            Experiment::Default => builder.add_source(File::from_str(DEFAULT, FileFormat::Toml)),
            Experiment::File(path) => {
                if !path.is_file() {
                    bail!("config file {} does not exist", path.display());
                }
                builder.add_source(File::from(path.as_path()).format(FileFormat::Toml))
            }
        };
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX.trim_end_matches('_'))
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(config_vars(env)?)),
        );
        for set in sets {
            let (key, value) = set
                .split_once('=')
                .with_context(|| format!("--set {set}: expected key=value"))?;
            check_set_indices(key)?;
            builder = builder
                .set_override(key.trim(), parse_value(value.trim()))
                .with_context(|| format!("--set {set}"))?;
        }
        let merged = builder.build().context("reading the configuration")?;
        let config: TrainConfig = merged
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a resolved configuration written by a run (`RUN_DIR/config.toml`).
    pub fn read_resolved(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: TrainConfig =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML, every key written.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("writing the configuration as TOML")
    }

    /// Checks every table once; the error names the key path and the bad value.
    pub fn validate(&self) -> Result<()> {
        self.vit.validate()?;
        let loss = &self.loss;
        loss.curriculum
            .validate()
            .map_err(|e| anyhow::anyhow!("loss.{e}"))?;
        loss.prototypes
            .validate()
            .map_err(|e| anyhow::anyhow!("loss.{e}"))?;
        positive_finite("loss.prototype_weight", loss.prototype_weight, true)?;

        let data = &self.data;
        if data.rec.is_empty() {
            data.synthetic
                .validate()
                .map_err(|e| anyhow::anyhow!("data.{e}"))?;
        }
        for (key, value) in [
            ("data.batch_size", data.batch_size),
            ("data.workers", data.workers),
            ("data.prefetch", data.prefetch),
            ("eval.batch_size", self.eval.batch_size),
            ("run.keep_checkpoints", self.run.keep_checkpoints),
            (
                "optim.gradient_accumulation",
                self.optim.gradient_accumulation,
            ),
        ] {
            if value == 0 {
                bail!("{key} must be positive, got 0");
            }
        }
        data.augment
            .validate()
            .map_err(|e| anyhow::anyhow!("data.{e}"))?;

        let optim = &self.optim;
        positive_finite("optim.lr", optim.lr, false)?;
        positive_finite("optim.weight_decay", optim.weight_decay, true)?;
        positive_finite("optim.epsilon", optim.epsilon, false)?;
        positive_finite("optim.warmup_epochs", optim.warmup_epochs, true)?;
        positive_finite("optim.power", optim.power, false)?;
        positive_finite("optim.clip_norm", optim.clip_norm, true)?;
        for (key, beta) in [("optim.beta1", optim.beta1), ("optim.beta2", optim.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                bail!("{key} must be in [0, 1), got {beta}");
            }
        }
        let epochs = loss.curriculum.epochs as f64;
        if optim.warmup_epochs >= epochs {
            bail!(
                "optim.warmup_epochs must be below loss.curriculum.epochs = {epochs}, got {}",
                optim.warmup_epochs
            );
        }
        if self.run.log_every == 0 {
            bail!("run.log_every must be positive, got 0");
        }
        let finetune = &self.finetune;
        positive_finite(
            "finetune.backbone_lr_scale",
            finetune.backbone_lr_scale,
            true,
        )?;
        if finetune.frozen_blocks > self.vit.depth {
            bail!(
                "finetune.frozen_blocks must be at most vit.depth = {}, got {}",
                self.vit.depth,
                finetune.frozen_blocks
            );
        }
        if finetune.freeze_backbone && (finetune.frozen_blocks > 0 || finetune.freeze_patch_embed) {
            bail!(
                "finetune.freeze_backbone already freezes every block and the patch embedding; \
                 leave finetune.frozen_blocks and finetune.freeze_patch_embed at 0 and false"
            );
        }
        self.eval
            .verification
            .validate()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }
}

/// The configuration variables among `env` (see [`ENV_PREFIX`]), names as given.
fn config_vars(
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<config::Map<String, String>> {
    let mut vars = config::Map::new();
    for (name, value) in env {
        // A name that is not UTF-8 cannot be one of lvface's.
        let Ok(name) = name.into_string() else {
            continue;
        };
        // The `config` crate matches the prefix in any case; so does this.
        let Some(rest) = name
            .get(..ENV_PREFIX.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(ENV_PREFIX))
            .map(|_| &name[ENV_PREFIX.len()..])
        else {
            continue;
        };
        if !rest.contains("__") {
            let first = rest.split('_').next().unwrap_or_default();
            if TABLES.iter().any(|t| t.eq_ignore_ascii_case(first)) {
                bail!(
                    "environment variable {name}: a configuration variable separates its table \
                     and key with `__`, as in LVFACE_OPTIM__LR"
                );
            }
            continue;
        }
        let value = value.into_string().map_err(|value| {
            anyhow::anyhow!("environment variable {name} is not UTF-8: {value:?}")
        })?;
        vars.insert(name, value);
    }
    Ok(vars)
}

fn positive_finite(key: &str, value: f64, zero_ok: bool) -> Result<()> {
    let ok = value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0));
    if !ok {
        let rule = if zero_ok {
            "must be finite and non-negative"
        } else {
            "must be finite and positive"
        };
        bail!("{key} {rule}, got {value}");
    }
    Ok(())
}

/// A `--set` value read as a TOML value (`3`, `1e-3`, `true`, `"text"`, `[1, 2]`), or as a
/// plain string when it is not one (`--set data.rec=/data/ms1m`).
/// The largest array index a `--set` key may name plus one: the config crate fills every slot up
/// to the index, so `phases[4000000000]` would allocate without bound.
const MAX_SET_INDEX: usize = 1024;

/// Refuses a `--set` key whose `[N]` indices are not numbers below [`MAX_SET_INDEX`].
fn check_set_indices(key: &str) -> Result<()> {
    for part in key.split('[').skip(1) {
        let index = part.split(']').next().unwrap_or_default().trim();
        if !index.parse::<usize>().is_ok_and(|i| i < MAX_SET_INDEX) {
            bail!("--set {key}: array index {index:?} must be a number below {MAX_SET_INDEX}");
        }
    }
    Ok(())
}

fn parse_value(text: &str) -> Value {
    match toml::from_str::<toml::Table>(&format!("v = {text}")) {
        Ok(mut table) => to_config_value(table.remove("v").expect("the key was just written")),
        Err(_) => Value::new(None, ValueKind::String(text.to_string())),
    }
}

fn to_config_value(value: toml::Value) -> Value {
    let kind = match value {
        toml::Value::String(s) => ValueKind::String(s),
        toml::Value::Integer(i) => ValueKind::I64(i),
        toml::Value::Float(f) => ValueKind::Float(f),
        toml::Value::Boolean(b) => ValueKind::Boolean(b),
        toml::Value::Datetime(d) => ValueKind::String(d.to_string()),
        toml::Value::Array(items) => {
            ValueKind::Array(items.into_iter().map(to_config_value).collect())
        }
        toml::Value::Table(table) => ValueKind::Table(
            table
                .into_iter()
                .map(|(k, v)| (k, to_config_value(v)))
                .collect(),
        ),
    };
    Value::new(None, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_and_default_are_valid() {
        let config = TrainConfig::load(&Experiment::Default, &[]).unwrap();
        assert!(config.data.rec.is_empty());
        let text = config.to_toml().unwrap();
        let back: TrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        vars.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    #[test]
    fn launch_variables_are_not_configuration() {
        let vars = env(&[
            ("LVFACE_NODE_ADDR", "10.0.0.2"),
            ("LVFACE_BENCH_CLASSES", "1000"),
            ("LVFACE_OPTIM__LR", "0.125"),
            ("LVFACE_DATA__SYNTHETIC__IDENTITIES", "12"),
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
        ]);
        let config = TrainConfig::load_with_env(&Experiment::Default, &[], vars).unwrap();
        assert_eq!(config.optim.lr, 0.125);
        assert_eq!(config.data.synthetic.identities, 12);
    }

    #[test]
    fn misspelt_configuration_variables_are_refused() {
        for (name, words) in [
            ("LVFACE_OPTIM_LR", &["LVFACE_OPTIM_LR", "__"][..]),
            ("LVFACE_OPTIM__LRR", &["lrr"][..]),
            ("LVFACE_OPTIMS__LR", &["optims"][..]),
        ] {
            let err = TrainConfig::load_with_env(&Experiment::Default, &[], env(&[(name, "1")]))
                .unwrap_err();
            let message = format!("{err:#}");
            for word in words {
                assert!(message.contains(word), "{name}: {message}");
            }
        }
    }

    #[test]
    fn tables_are_those_of_the_base_config() {
        let base: toml::Table = toml::from_str(BASE).unwrap();
        let mut keys: Vec<&str> = base.keys().map(String::as_str).collect();
        let mut tables = TABLES.to_vec();
        keys.sort_unstable();
        tables.sort_unstable();
        assert_eq!(keys, tables);
    }

    #[test]
    fn set_keys_with_huge_or_odd_indices_are_refused_before_anything_is_allocated() {
        for key in [
            "loss.curriculum.phases[4000000000].start_epoch",
            "eval.bins[-1]",
            "a[x]",
        ] {
            let err = TrainConfig::load(&Experiment::Default, &[format!("{key}=1")])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("array index") && err.contains("below 1024"),
                "{err}"
            );
        }
        let ok = TrainConfig::load(
            &Experiment::Default,
            &["loss.curriculum.phases[1].start_epoch=5".into()],
        )
        .unwrap();
        assert_eq!(ok.loss.curriculum.phases[1].start_epoch, 5);
    }

    #[test]
    fn fine_tuning_keys_are_validated_naming_the_key() {
        for (set, words) in [
            (
                &["finetune.backbone_lr_scale=-0.1"][..],
                &["finetune.backbone_lr_scale", "-0.1"][..],
            ),
            (
                &["finetune.backbone_lr_scale=nan"],
                &["finetune.backbone_lr_scale"],
            ),
            (
                &["finetune.frozen_blocks=4"],
                &["finetune.frozen_blocks", "vit.depth = 3", "4"],
            ),
            (
                &["finetune.freeze_backbone=true", "finetune.frozen_blocks=1"],
                &["finetune.freeze_backbone", "finetune.frozen_blocks"],
            ),
        ] {
            let sets: Vec<String> = set.iter().map(|s| s.to_string()).collect();
            let err = TrainConfig::load(&Experiment::Default, &sets).unwrap_err();
            let err = format!("{err:#}");
            for word in words {
                assert!(err.contains(word), "{set:?}: {word:?} not in: {err}");
            }
        }
        let sets = ["finetune.frozen_blocks=3".to_string()];
        let config = TrainConfig::load(&Experiment::Default, &sets).unwrap();
        assert_eq!(config.finetune.frozen_blocks, 3);
        // A run folder written before the fine-tuning keys existed reads with their defaults.
        let mut table: toml::Table = toml::from_str(&config.to_toml().unwrap()).unwrap();
        table.remove("finetune");
        let old: TrainConfig = toml::from_str(&toml::to_string(&table).unwrap()).unwrap();
        assert_eq!(old.finetune, FinetuneConfig::default());
        assert_eq!(old.finetune.backbone_lr_scale, 1.0);
    }

    #[test]
    fn set_overrides_parse_toml_values() {
        let sets = ["optim.lr=0.25".to_string(), "data.rec=/x/y".to_string()];
        let config = TrainConfig::load(&Experiment::Default, &sets).unwrap();
        assert_eq!(config.optim.lr, 0.25);
        assert_eq!(config.data.rec, "/x/y");
    }
}
