//! [`PartialFc`]: the class-centre layer sharded across ranks, with Partial FC negative-class
//! sampling and a softmax cross-entropy distributed over the shards.
//!
//! One [`PartialFc::step`] per optimizer step, on every rank:
//! 1. all-gather the batch sizes (they must be equal), the embeddings and the labels;
//! 2. keep the labels of this rank's classes (others become -1) and sample this shard's classes,
//!    every positive kept;
//! 3. compute the margined logits against the sampled centres of the shard;
//! 4. the softmax denominators: each rank sums `exp(z - s)` over its columns, one all-reduce adds
//!    them up (with the target logits, which only their owner contributes);
//! 5. backward through a local surrogate whose gradient is the true one (see [`ce_parts`]), then
//!    one all-reduce sums the embedding gradients over shards and each rank keeps its rows.
//!
//! **The softmax shift.** insightface subtracts the row maximum, all-reduced with MAX. Here every
//! logit is at most `s` (cosines are clamped to `[-1, 1]`, margins only lower the target), so
//! `exp(z - s)` never overflows and no maximum is exchanged: the step costs two all-reduces of
//! the gathered batch's size less. The sum could only underflow if every logit of a row were
//! below `s - 87` (f32), i.e. with `s = 64` every cosine below -0.36, which does not happen with
//! more than a handful of classes; the step reports it as an error instead of a NaN.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use lvface_loss::{
    cosine_matrix, target_logits, CombinedMargin, NegativeSampler, NegativeSamplerConfig,
    PrototypeBank, SampledClasses, StableStageLoss,
};
use serde::{Deserialize, Serialize};

use crate::collective::Collective;
use crate::error::{PfcError, Result};
use crate::shard::ClassShard;

/// Labels travel between ranks as f32, which holds every integer up to 2^24 exactly.
pub const MAX_CLASSES: usize = 1 << 24;

/// Configuration of a [`PartialFc`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartialFcConfig {
    /// Fraction of each shard's classes a margin step keeps (every positive always kept);
    /// 1 is plain model parallelism.
    pub sample_rate: f64,
    /// Seed of the negative sampling; rank `r` draws from its own stream.
    pub seed: u64,
}

impl Default for PartialFcConfig {
    fn default() -> Self {
        Self {
            sample_rate: 1.0,
            seed: 2048,
        }
    }
}

impl PartialFcConfig {
    /// Checks every field once; the error names the key (under `pfc`) and the value.
    pub fn validate(&self) -> Result<()> {
        if !(self.sample_rate > 0.0 && self.sample_rate <= 1.0) {
            return Err(PfcError::invalid(
                "pfc.sample_rate",
                "must be in (0, 1]",
                self.sample_rate,
            ));
        }
        Ok(())
    }

    /// The layer of `rank` among `world_size` over `num_classes` classes.
    pub fn init(&self, rank: usize, world_size: usize, num_classes: usize) -> Result<PartialFc> {
        self.validate()?;
        if num_classes == 0 || num_classes > MAX_CLASSES {
            return Err(PfcError::invalid(
                "num_classes",
                format!("must be in 1..={MAX_CLASSES} (labels travel as f32)"),
                num_classes,
            ));
        }
        if rank >= world_size {
            return Err(PfcError::invalid(
                "rank",
                format!("must be below the world size {world_size}"),
                rank,
            ));
        }
        let sampler = NegativeSamplerConfig {
            sample_rate: self.sample_rate,
            seed: rank_seed(self.seed, rank),
        }
        .init();
        Ok(PartialFc {
            config: *self,
            shard: ClassShard::new(rank, world_size, num_classes),
            sampler,
        })
    }
}

/// Rank `r`'s sampling stream: the seed mixed with the rank by a golden-ratio multiple, so ranks
/// draw independently and rank 0 draws what a single device would.
fn rank_seed(seed: u64, rank: usize) -> u64 {
    seed ^ (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Which loss the shards compute.
#[derive(Debug, Clone, Copy)]
pub enum ShardLoss<'a, B: Backend> {
    /// The combined margin softmax (the early stage), over the sampled classes.
    Margin(CombinedMargin),
    /// LVFace's stable-stage loss with this rank's shard of the prototype bank, over all classes
    /// (sampling is off in this stage, as the paper prescribes).
    Stable {
        /// The loss.
        loss: StableStageLoss,
        /// The bank of this shard's classes, `[num_local, dim]`.
        bank: &'a PrototypeBank<B>,
    },
}

/// One rank's share of the sharded classifier: the shard arithmetic and the sampler. The centre
/// shard itself belongs to the caller (a parameter of its model).
#[derive(Debug, Clone)]
pub struct PartialFc {
    config: PartialFcConfig,
    shard: ClassShard,
    sampler: NegativeSampler,
}

/// What one [`PartialFc::step`] gives a rank.
#[derive(Debug, Clone)]
pub struct ShardStep<B: Backend> {
    /// The loss of the whole (gathered) batch, the same on every rank.
    pub loss: f32,
    /// The gradient of the loss with respect to this rank's embeddings, summed over shards.
    ///
    /// Shape `[batch, dim]`.
    pub embedding_grad: Tensor<B, 2>,
    /// The gradient with respect to this rank's centre shard; zero on rows not sampled.
    ///
    /// Shape `[num_local, dim]`.
    pub centre_grad: Tensor<B, 2>,
    /// The shard's classes that took part (shard numbering) and the gathered labels in their
    /// numbering.
    pub sampled: SampledClasses,
    /// The gathered embeddings of every rank, in rank order, for the prototype bank.
    ///
    /// Shape `[world · batch, dim]`.
    pub gathered: Tensor<B, 2>,
    /// The gathered labels in this shard's numbering (-1: another shard's class).
    pub local_labels: Vec<i64>,
}

impl<B: Backend> ShardStep<B> {
    /// Folds the gathered batch into this shard's prototype bank (call it after the step).
    pub fn update_bank<A: AutodiffBackend<InnerBackend = B>>(&self, bank: &mut PrototypeBank<A>) {
        let device = bank.prototypes().device();
        let n = self.local_labels.len();
        let labels = Tensor::<A, 1, Int>::from_data(
            TensorData::new(self.local_labels.clone(), [n]),
            &device,
        );
        bank.update(Tensor::from_inner(self.gathered.clone()), labels);
    }
}

impl PartialFc {
    /// The configuration this layer was built from.
    pub fn config(&self) -> &PartialFcConfig {
        &self.config
    }

    /// The classes this rank holds.
    pub fn shard(&self) -> ClassShard {
        self.shard
    }

    /// Loss and gradients of one step. Every rank calls it with its own batch (the same size
    /// everywhere) and its own centre shard.
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]`, this rank's backbone output (values only)
    /// - labels: `batch` global class ids
    /// - centres: `[num_local, dim]`, this rank's shard
    pub fn step<B: AutodiffBackend, C: Collective<B::InnerBackend>>(
        &self,
        embeddings: Tensor<B::InnerBackend, 2>,
        labels: &[i64],
        centres: Tensor<B::InnerBackend, 2>,
        loss: ShardLoss<'_, B>,
        step: u64,
        comm: &C,
    ) -> Result<ShardStep<B::InnerBackend>> {
        let rank = self.shard.rank;
        let [batch, dim] = embeddings.dims();
        self.check_inputs(batch, labels, &centres)?;
        let device = embeddings.device();

        let sizes: Tensor<B::InnerBackend, 2> =
            comm.all_gather(Tensor::from_data([[batch as f32]], &device))?;
        let sizes = to_vec(sizes);
        if sizes.iter().any(|&b| b != batch as f32) {
            return Err(PfcError::Mismatch {
                rank,
                what: format!(
                    "every rank must bring the same batch size, got {sizes:?} in rank order"
                ),
            });
        }
        let gathered = comm.all_gather(embeddings)?;
        let label_column = labels.iter().map(|&y| y as f32).collect::<Vec<_>>();
        let label_column = Tensor::<B::InnerBackend, 2>::from_data(
            TensorData::new(label_column, [batch, 1]),
            &device,
        );
        let global_labels: Vec<i64> = to_vec(comm.all_gather(label_column)?)
            .into_iter()
            .map(|y| y as i64)
            .collect();
        let local_labels: Vec<i64> = global_labels
            .iter()
            .map(|&y| self.shard.local_label(y))
            .collect();
        let total = global_labels.len();

        let sampled = match loss {
            ShardLoss::Margin(_) => {
                self.sampler
                    .sample(&local_labels, self.shard.num_local(), step)
            }
            ShardLoss::Stable { .. } => NegativeSamplerConfig {
                sample_rate: 1.0,
                seed: self.config.seed,
            }
            .init()
            .sample(&local_labels, self.shard.num_local(), step),
        };

        let x = Tensor::<B, 2>::from_inner(gathered.clone()).require_grad();
        let w = Tensor::<B, 2>::from_inner(centres).require_grad();
        let selected = sampled.select_centres(w.clone());
        let sampled_labels = sampled.label_tensor::<B>(&device);
        let local_label_tensor =
            Tensor::<B, 1, Int>::from_data(TensorData::new(local_labels.clone(), [total]), &device);

        let mut parts: Vec<SoftmaxPart<B>> = Vec::new();
        match loss {
            ShardLoss::Margin(margin) => {
                let logits = margin
                    .forward_logits(cosine_matrix(x.clone(), selected), sampled_labels.clone());
                parts.push((logits, sampled_labels, 1.0, margin.config().s));
            }
            ShardLoss::Stable { loss, bank } => {
                let s = loss.config().margin.s;
                let lambda = loss.config().prototype_weight;
                let logits =
                    loss.forward_logits(x.clone(), selected, local_label_tensor.clone(), bank);
                parts.push((logits, local_label_tensor.clone(), 1.0 / (1.0 + lambda), s));
                if lambda > 0.0 {
                    let prototype_logits = bank
                        .forward_logits(x.clone(), local_label_tensor.clone())
                        .mul_scalar(s);
                    parts.push((
                        prototype_logits,
                        local_label_tensor,
                        lambda / (1.0 + lambda),
                        s,
                    ));
                }
            }
        }

        // One all-reduce carries every part's denominators and target logits.
        let (exp_sums, targets): (Vec<_>, Vec<_>) = parts
            .iter()
            .map(|(logits, labels, _, shift)| ce_parts(logits.clone(), labels.clone(), *shift))
            .unzip();
        let local: Vec<Tensor<B::InnerBackend, 1>> = exp_sums
            .iter()
            .chain(&targets)
            .map(|t| t.clone().inner())
            .collect();
        let reduced = comm.all_reduce_sum(Tensor::stack::<2>(local, 0))?;
        let k = parts.len();
        let mut loss_value = 0.0f64;
        let mut surrogate = Tensor::<B, 1>::zeros([1], &device);
        for (i, (_, _, weight, shift)) in parts.iter().enumerate() {
            let denominators = reduced.clone().slice([i..i + 1, 0..total]).reshape([total]);
            let target = reduced
                .clone()
                .slice([k + i..k + i + 1, 0..total])
                .reshape([total]);
            let denominators_host = to_vec(denominators.clone());
            if let Some(row) = denominators_host
                .iter()
                .position(|&d| d.is_nan() || d <= 0.0 || d.is_infinite())
            {
                return Err(PfcError::NonFinite {
                    rank,
                    sample: row,
                    value: denominators_host[row],
                });
            }
            let row_loss = denominators.clone().log().add_scalar(*shift) - target;
            loss_value += weight * row_loss.mean().into_scalar().elem::<f64>();
            // d/dz of Σ_rows exp_sum_local / detach(denominator) is the softmax on this
            // shard's columns, and d/dz of the local target sum is the one-hot: together the
            // cross-entropy's gradient, with no communication inside the graph.
            let part = (exp_sums[i].clone() / Tensor::from_inner(denominators)).sum()
                - targets[i].clone().sum();
            surrogate = surrogate + part.mul_scalar(*weight / total as f64);
        }

        let grads = surrogate.backward();
        let embedding_grads = x
            .grad(&grads)
            .unwrap_or_else(|| Tensor::zeros([total, dim], &device));
        let centre_grad = w
            .grad(&grads)
            .unwrap_or_else(|| Tensor::zeros([self.shard.num_local(), dim], &device));
        let embedding_grads = comm.all_reduce_sum(embedding_grads)?;
        let embedding_grad = embedding_grads.slice([rank * batch..(rank + 1) * batch, 0..dim]);
        Ok(ShardStep {
            loss: loss_value as f32,
            embedding_grad,
            centre_grad,
            sampled,
            gathered,
            local_labels,
        })
    }

    fn check_inputs<B: Backend>(
        &self,
        batch: usize,
        labels: &[i64],
        centres: &Tensor<B, 2>,
    ) -> Result<()> {
        let rank = self.shard.rank;
        if labels.len() != batch {
            return Err(PfcError::Mismatch {
                rank,
                what: format!("{batch} embeddings but {} labels", labels.len()),
            });
        }
        if let Some(bad) = labels
            .iter()
            .find(|&&y| y < 0 || y >= self.shard.num_classes as i64)
        {
            return Err(PfcError::Mismatch {
                rank,
                what: format!(
                    "label {bad} is outside 0..{} (the classifier's classes)",
                    self.shard.num_classes
                ),
            });
        }
        let rows = centres.dims()[0];
        if rows != self.shard.num_local() {
            return Err(PfcError::Mismatch {
                rank,
                what: format!(
                    "the centre shard has {rows} rows, the shard {} classes",
                    self.shard.num_local()
                ),
            });
        }
        Ok(())
    }
}

/// One distributed softmax of a step: logits, labels (shard numbering), weight in the total
/// loss, and the constant subtracted before `exp`.
type SoftmaxPart<B> = (Tensor<B, 2>, Tensor<B, 1, Int>, f64, f64);

/// Per row: `Σ_j exp(z_j - shift)` over this shard's columns, and the target logit (0 when the
/// class is elsewhere).
///
/// # Shapes
/// - logits: `[rows, classes]`
/// - labels: `[rows]`, in `-1..classes`
/// - output: `[rows]`, `[rows]`
fn ce_parts<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    shift: f64,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let [rows, _] = logits.dims();
    let exp_sum = logits
        .clone()
        .sub_scalar(shift)
        .exp()
        .sum_dim(1)
        .reshape([rows]);
    (exp_sum, target_logits(logits, labels))
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec()
        .expect("float tensor")
}
