//! One optimizer step of one rank: its micro-batches through the backbone and the sharded
//! classification layer, the backbone's gradients summed over ranks and clipped, AdamW over the
//! backbone and this rank's centre shard, then the prototype bank.

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use lvface_data::Batch;
use lvface_loss::{MarginLoss, Phase, PrototypeBank, StableStageConfig};
use lvface_pfc::{
    all_reduce_gradients, Collective, PartialFc, PartialFcConfig, PfcError, ShardLoss, ShardStep,
};
use lvface_vit::Vit;

use crate::checkpoint::MarginState;
use crate::clip::clip_global_norm;
use crate::config::{Accumulate, FinetuneConfig, LossConfig, TrainConfig};
use crate::model::TrainModel;
use crate::optim::Optim;
use crate::ranks::GENERATOR;
use crate::seeds::step_seed;

/// What does not change between the steps of a phase.
pub(crate) struct StepPlan<'a, C> {
    /// This rank's classifier shard and sampler for the phase.
    pub pfc: PartialFc,
    /// The curriculum's phase.
    pub phase: Phase,
    /// Prototype weight and expectation weighting of the stable stage.
    pub loss: &'a LossConfig,
    /// Largest global norm of the backbone's gradients (0: none).
    pub clip_norm: f64,
    /// How the micro-batches' gradients combine.
    pub accumulate: Accumulate,
    /// The backbone's learning-rate multiplier, and when it is held.
    pub finetune: &'a FinetuneConfig,
    /// `run.seed`.
    pub seed: u64,
    /// The ranks.
    pub comm: &'a C,
}

/// How a step ended.
pub(crate) enum Outcome {
    /// Applied.
    Done {
        /// The loss of the step's batches, averaged over its micro-batches.
        loss: f64,
        /// The backbone's global gradient norm before clipping (0 while it is held).
        grad_norm: f64,
    },
    /// Not applied: the loss or the gradient is not finite (the same on every rank).
    NonFinite(String),
}

impl<'a, C> StepPlan<'a, C> {
    /// The plan of `phase` for rank `rank` of `world` over `classes` classes: Partial FC at the
    /// phase's sample rate when it samples, all classes otherwise.
    pub fn for_phase(
        config: &'a TrainConfig,
        phase: Phase,
        (rank, world, classes): (usize, usize, usize),
        comm: &'a C,
    ) -> Result<Self> {
        let sample_rate = if phase.sampling {
            phase.sample_rate
        } else {
            1.0
        };
        let seed = config.run.seed;
        Ok(Self {
            pfc: PartialFcConfig {
                sample_rate,
                seed,
                softmax: config.loss.softmax,
            }
            .init(rank, world, classes)?,
            phase,
            loss: &config.loss,
            clip_norm: config.optim.clip_norm,
            accumulate: config.optim.accumulate,
            finetune: &config.finetune,
            seed,
            comm,
        })
    }
}

impl<C> StepPlan<'_, C> {
    /// Runs optimizer step `step` (counting from 0) on `batches`, its micro-batches, at learning
    /// rate `lr` (the backbone's is `lr · finetune.backbone_lr_scale`). Nothing of a non-finite
    /// step is applied, neither to the model nor to the bank or the margin losses' statistics.
    ///
    /// While the backbone is held (`finetune.freeze_backbone`, or a step within
    /// `finetune.classifier_warmup_steps`) it embeds in inference mode, without a graph: no
    /// backward, no gradient exchange, no AdamW step, and BatchNorm's running statistics stay
    /// as they are, so only the classification layer moves.
    #[allow(clippy::too_many_arguments)]
    pub fn run<B>(
        &self,
        mut model: TrainModel<B>,
        optim: &mut Optim<B>,
        bank: &mut PrototypeBank<B>,
        margins: &mut MarginState,
        batches: &[Batch],
        step: u64,
        lr: f64,
    ) -> Result<(TrainModel<B>, Outcome)>
    where
        B: AutodiffBackend,
        C: Collective<B::InnerBackend>,
    {
        let comm = self.comm;
        let device = model.centres.device();
        let first_batch = step * batches.len() as u64;
        let held = self.finetune.backbone_held(step);
        let frozen = held.then(|| model.backbone.valid());
        let scale = self.accumulate.weight(batches.len());
        let mean = 1.0 / batches.len() as f64;
        let mut accumulated = GradientsAccumulator::<Vit<B>>::new();
        let mut centre_grad: Option<Tensor<B::InnerBackend, 2>> = None;
        let mut taken = vec![false; self.pfc.shard().num_local()];
        let mut shard_steps: Vec<ShardStep<B::InnerBackend>> = Vec::new();
        let mut loss = 0.0;
        let mut next_margins = *margins;
        for (i, batch) in batches.iter().enumerate() {
            let index = first_batch + i as u64;
            let images = batch.to_tensor::<B>(&device);
            let embeddings = {
                let _generator = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
                let stream = index * comm.world_size() as u64 + comm.rank() as u64;
                B::seed(&device, step_seed(self.seed, stream));
                match &frozen {
                    Some(backbone) => Tensor::from_inner(backbone.forward(images.inner())),
                    None => model.backbone.forward(images),
                }
            };
            let shard_step = self.shard_step(
                &model,
                bank,
                &mut next_margins,
                embeddings.clone(),
                batch,
                index,
            );
            let mut out = match shard_step {
                Ok(out) if out.loss.is_finite() => out,
                Ok(out) => return Ok((model, Outcome::NonFinite(format!("loss {}", out.loss)))),
                Err(e @ PfcError::NonFinite { .. }) => {
                    return Ok((model, Outcome::NonFinite(e.to_string())))
                }
                Err(e) => return Err(e.into()),
            };
            loss += out.loss as f64 * mean;
            if frozen.is_none() {
                // The surrogate's gradient with respect to the embeddings is the sharded loss's.
                let upstream = Tensor::from_inner(out.embedding_grad.clone().mul_scalar(scale));
                let grads = (embeddings * upstream).sum().backward();
                accumulated.accumulate(
                    &model.backbone,
                    GradientsParams::from_grads(grads, &model.backbone),
                );
            }
            // Taken out of `out`, which lives until the bank update: at a million classes each
            // copy of a shard-sized gradient is 2 GB.
            let placeholder = Tensor::zeros([1, 1], &out.centre_grad.device());
            let grad = std::mem::replace(&mut out.centre_grad, placeholder);
            let grad = if scale == 1.0 {
                grad
            } else {
                grad.mul_scalar(scale)
            };
            centre_grad = Some(match centre_grad {
                Some(sum) => sum + grad,
                None => grad,
            });
            for &class in &out.sampled.index {
                taken[class as usize] = true;
            }
            shard_steps.push(out);
        }

        // Every rank holds the backbone at the same steps, so all skip the exchange together.
        let mut grads = if held {
            GradientsParams::new()
        } else {
            all_reduce_gradients::<B, _, _>(accumulated.grads(), &model.backbone, comm)?
        };
        let grad_norm = clip_global_norm(&model.backbone, &mut grads, self.clip_norm);
        if !grad_norm.is_finite() {
            let what = format!("backbone gradient norm {grad_norm}");
            return Ok((model, Outcome::NonFinite(what)));
        }
        let centre_grad = centre_grad.expect("a step has at least one batch");
        let backbone_lr = lr * self.finetune.backbone_lr_scale;
        model = optim.step(backbone_lr, lr, model, grads, centre_grad, &taken);
        for out in &shard_steps {
            out.update_bank(bank);
        }
        *margins = next_margins;
        Ok((model, Outcome::Done { loss, grad_norm }))
    }

    /// The sharded loss of one micro-batch and its gradients (embeddings and centre shard).
    fn shard_step<B>(
        &self,
        model: &TrainModel<B>,
        bank: &PrototypeBank<B>,
        margins: &mut MarginState,
        embeddings: Tensor<B, 2>,
        batch: &Batch,
        index: u64,
    ) -> std::result::Result<ShardStep<B::InnerBackend>, PfcError>
    where
        B: AutodiffBackend,
        C: Collective<B::InnerBackend>,
    {
        let phase = &self.phase;
        let step = |loss: ShardLoss<'_, B>| {
            self.pfc.step::<B, C>(
                embeddings.inner(),
                &batch.labels,
                model.centres.val().inner(),
                loss,
                index,
                self.comm,
            )
        };
        match phase.margin_loss {
            MarginLoss::Combined if phase.prototypes => step(ShardLoss::Stable {
                loss: StableStageConfig {
                    margin: phase.margin,
                    prototype_weight: self.loss.prototype_weight,
                    expectation_weighting: self.loss.expectation_weighting,
                }
                .init(),
                bank,
            }),
            MarginLoss::Combined => step(ShardLoss::Margin(phase.margin.init())),
            MarginLoss::CurricularFace => {
                let mut loss = phase.curricular_face.init();
                loss.set_t(margins.curricular_face_t);
                let out = step(ShardLoss::CurricularFace(&mut loss))?;
                margins.curricular_face_t = loss.t();
                Ok(out)
            }
            MarginLoss::AdaFace => {
                let mut loss = phase.ada_face.init();
                loss.norm_mean = margins.ada_face_norm_mean;
                loss.norm_std = margins.ada_face_norm_std;
                let out = step(ShardLoss::AdaFace(&mut loss))?;
                margins.ada_face_norm_mean = loss.norm_mean;
                margins.ada_face_norm_std = loss.norm_std;
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod parity;
