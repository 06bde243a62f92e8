//! [`time_train_steps`]: the wall-clock time of the real optimizer step of a run on one rank, on
//! random batches, for comparing lvface's training throughput with other implementations
//! (`lvface-train probe --train-step`, `benches/reference/train_step_torch.py`).

use std::time::Instant;

use anyhow::{bail, Result};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use lvface_data::Batch;
use lvface_pfc::{ClassShard, PartialFcConfig, Solo};

use crate::checkpoint::MarginState;
use crate::config::TrainConfig;
use crate::model::init_model;
use crate::model::TrainModel;
use crate::optim::{init_optimizer, Optim};
use crate::seeds::step_seed;
use crate::step::{Outcome, StepPlan};

/// What [`time_train_steps`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTiming {
    /// Images per step: `data.batch_size · optim.gradient_accumulation`.
    pub images_per_step: usize,
    /// Timed steps.
    pub steps: usize,
    /// Median wall-clock time of a timed step, in milliseconds.
    pub median_ms: f64,
    /// Mean of the timed steps, in milliseconds.
    pub mean_ms: f64,
    /// Fastest timed step, in milliseconds: the figure least affected by other processes.
    pub min_ms: f64,
    /// Images per second at the median step time.
    pub images_per_s: f64,
    /// Fraction of the classes each step's Partial FC sampler keeps (the first phase's).
    pub sample_rate: f64,
    /// Trainable parameters of the backbone (PyTorch's count).
    pub backbone_params: usize,
    /// Loss of the last step.
    pub last_loss: f64,
    /// Largest absolute change of the position embedding and the patch-embedding weights over
    /// all steps: positive once the optimizer really stepped.
    pub weight_change: f64,
}

/// Times `steps` optimizer steps, after `warmup` untimed ones, of what a run of `config` does
/// on one rank with `classes` classes: the backbone (`config.vit`) and the centre matrix
/// (`[classes, num_features]`), AdamW over both (`config.optim`, at the peak rate
/// `optim.lr`), the prototype bank, and `StepPlan::run` in the curriculum's first phase
/// (for LVFace's recipe ArcFace s 64, m 0.5 with Partial FC sampling at rate 0.3): forward with
/// masking and drop path, the sampled margin softmax, backward, global-norm clipping of the
/// backbone's gradients, the AdamW update, the centres not sampled put back, and the bank's
/// update. Each step gets `optim.gradient_accumulation` fresh random batches of
/// `data.batch_size` images (pixels uniform in `[-1, 1]`, labels uniform below `classes`),
/// drawn before its clock starts.
///
/// A step's clock stops after the step's loss has been read back and the backend synchronised,
/// so asynchronous backends are timed whole.
pub fn time_train_steps<B: AutodiffBackend>(
    config: &TrainConfig,
    classes: usize,
    warmup: usize,
    steps: usize,
    device: &B::Device,
) -> Result<StepTiming> {
    config.validate()?;
    config.vit.check_device::<B>(device)?;
    if classes == 0 || steps == 0 {
        bail!("time_train_steps needs at least one class and one timed step");
    }
    let seed = config.run.seed;
    let mut model = init_model::<B>(config, ClassShard::new(0, 1, classes), device);
    let mut optim: Optim<B> = init_optimizer(&config.optim);
    let mut bank = config
        .loss
        .prototypes
        .init::<B>(classes, config.vit.num_features, device);
    let phase = config.loss.curriculum.phases[0];
    let sample_rate = phase.effective_sample_rate();
    let comm = Solo::new();
    let plan = StepPlan {
        pfc: PartialFcConfig {
            sample_rate,
            seed,
            softmax: config.loss.softmax,
        }
        .init(0, 1, classes)?,
        phase,
        loss: &config.loss,
        finetune: &config.finetune,
        clip_norm: config.optim.clip_norm,
        accumulate: config.optim.accumulate,
        seed,
        comm: &comm,
    };

    let watched = |model: &TrainModel<B>| -> Vec<f32> {
        let mut values = floats(model.backbone.pos_embed.val().inner());
        values.extend(floats(model.backbone.patch_embed.proj.weight.val().inner()));
        values
    };
    let start_weights = watched(&model);
    let accumulation = config.optim.gradient_accumulation.max(1);
    let side = config.vit.image_size;
    let shape = [config.data.batch_size, 3, side, side];
    let mut times = Vec::with_capacity(steps);
    let mut last_loss = f64::NAN;
    let mut margins = MarginState::default();
    for step in 0..warmup + steps {
        let first = (step * accumulation) as u64;
        let batches: Vec<Batch> = (0..accumulation as u64)
            .map(|i| random_batch(shape, classes, step_seed(seed ^ BATCH_STREAM, first + i)))
            .collect();
        let start = Instant::now();
        let outcome;
        (model, outcome) = plan.run(
            model,
            &mut optim,
            &mut bank,
            &mut margins,
            &batches,
            step as u64,
            config.optim.lr,
        )?;
        B::sync(device).map_err(|e| anyhow::anyhow!("synchronising the device: {e:?}"))?;
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        match outcome {
            Outcome::Done { loss, .. } => last_loss = loss,
            Outcome::NonFinite(what) => bail!("step {} was not finite: {what}", step + 1),
        }
        if step >= warmup {
            times.push(elapsed);
        }
    }
    let weight_change = start_weights
        .iter()
        .zip(watched(&model))
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);

    let mean_ms = times.iter().sum::<f64>() / times.len() as f64;
    let min_ms = times.iter().copied().fold(f64::INFINITY, f64::min);
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    let median_ms = if times.len() % 2 == 0 {
        (times[mid - 1] + times[mid]) / 2.0
    } else {
        times[mid]
    };
    let images_per_step = config.data.batch_size * accumulation;
    Ok(StepTiming {
        images_per_step,
        steps,
        median_ms,
        mean_ms,
        min_ms,
        images_per_s: images_per_step as f64 / (median_ms / 1e3),
        sample_rate,
        backbone_params: model.backbone.num_trainable_params(),
        last_loss,
        weight_change,
    })
}

/// Seeds the random batches apart from the run's other streams.
const BATCH_STREAM: u64 = 0x7468_726f_7567_6800;

/// A batch of `shape` with pixels uniform in `[-1, 1]` and labels uniform below `classes`,
/// a function of `seed` alone (the stream of [`step_seed`]).
fn random_batch(shape: [usize; 4], classes: usize, seed: u64) -> Batch {
    let mut counter = 0u64;
    let mut next = move || {
        counter += 1;
        step_seed(seed, counter)
    };
    let values = shape.iter().product::<usize>();
    let pixels = (0..values)
        .map(|_| (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        .collect();
    let labels = (0..shape[0])
        .map(|_| (next() % classes as u64) as i64)
        .collect();
    Batch {
        pixels,
        shape,
        labels,
        indices: (0..shape[0]).collect(),
    }
}

/// The values of `tensor`, flattened.
fn floats<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("a float tensor")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    use crate::config::Experiment;

    /// configs/smoke.toml's model: 32 px, 8 px patches, one block 32 wide.
    fn smoke() -> TrainConfig {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/smoke.toml");
        TrainConfig::load(
            &Experiment::File(path.into()),
            &["data.batch_size=8".into()],
        )
        .unwrap()
    }

    #[test]
    fn times_real_optimizer_steps() {
        let config = smoke();
        let device = Default::default();
        let timing = time_train_steps::<Autodiff<Flex>>(&config, 50, 1, 3, &device).unwrap();
        assert_eq!(timing.steps, 3);
        assert_eq!(timing.images_per_step, 8);
        assert_eq!(timing.sample_rate, 0.5);
        for ms in [timing.median_ms, timing.mean_ms, timing.min_ms] {
            assert!(ms.is_finite() && ms > 0.0, "{timing:?}");
        }
        assert!(timing.min_ms <= timing.median_ms && timing.min_ms <= timing.mean_ms);
        assert!(timing.images_per_s.is_finite() && timing.images_per_s > 0.0);
        assert!(timing.last_loss.is_finite() && timing.last_loss > 0.0);
        // Four AdamW steps at lr 2e-3 move every weight by about lr each.
        assert!(timing.weight_change > 1e-4, "{timing:?}");
    }

    #[test]
    fn random_batches_are_in_range_and_repeatable() {
        let a = random_batch([4, 3, 8, 8], 7, 1);
        assert_eq!(a.pixels.len(), 4 * 3 * 8 * 8);
        assert!(a.pixels.iter().all(|p| (-1.0..=1.0).contains(p)));
        assert!(a.labels.iter().all(|&l| (0..7).contains(&l)));
        assert_eq!(a, random_batch([4, 3, 8, 8], 7, 1));
        assert_ne!(a.pixels, random_batch([4, 3, 8, 8], 7, 2).pixels);
    }
}
