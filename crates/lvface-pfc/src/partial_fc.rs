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
//! combined-margin, AdaFace or prototype logit is at most `s` (cosines are clamped to `[-1, 1]`,
//! margins only lower the target), so up to `s` = [`CONSTANT_SHIFT_LIMIT`] the step subtracts
//! `s` and exchanges no maximum, two all-reduces of the gathered batch's size less. That sum
//! could only underflow if every logit of a row were below `s - 87` (f32), i.e. with `s = 64`
//! every cosine below -0.36, which does not happen with more than a handful of classes; the step
//! reports it as an error instead of a NaN. Above the limit (at initialisation, with cosines
//! near 0, `exp(-s)` is below f32's smallest normal from `s ≈ 87`), and always for
//! CurricularFace, whose modulated negatives reach `2s`, each row is shifted by its all-reduced
//! maximum, as insightface does.

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use lvface_loss::{
    cosine_matrix, target_logits, AdaFace, BlockwiseMarginSoftmax, Columns, CombinedMargin,
    CurricularFace, NegativeSampler, NegativeSamplerConfig, NormalizedRows, PrototypeBank,
    SampledClasses, StableStageLoss,
};
use serde::{Deserialize, Serialize};

use crate::collective::Collective;
use crate::error::{PfcError, Result};
use crate::shard::ClassShard;

/// Labels travel between ranks as f32, which holds every integer up to 2^24 exactly.
pub const MAX_CLASSES: usize = 1 << 24;

/// The largest scale `s` whose logits the step shifts by `s` itself; above it, by each row's
/// all-reduced maximum (see the module documentation).
pub const CONSTANT_SHIFT_LIMIT: f64 = 80.0;

/// Configuration of a [`PartialFc`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartialFcConfig {
    /// Fraction of each shard's classes a margin step keeps (every positive always kept);
    /// 1 is plain model parallelism.
    pub sample_rate: f64,
    /// Seed of the negative sampling; rank `r` draws from its own stream.
    pub seed: u64,
    /// How the combined-margin softmax is computed.
    pub softmax: ShardSoftmax,
}

/// How a step computes the combined margin softmax ([`ShardLoss::Margin`]); the other losses
/// are always materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardSoftmax {
    /// Blockwise on burn's CPU backends, materialised on the others.
    #[default]
    Auto,
    /// [`BlockwiseMarginSoftmax`]: blocks of classes, the `[batch, classes]` logits never
    /// stored, the per-element work on the host.
    Blockwise,
    /// The logits as one tensor, differentiated by burn's autodiff.
    Materialised,
}

impl ShardSoftmax {
    /// `Auto` made concrete for backend `B`: blockwise where the tensors live in host memory
    /// (burn's `flex` and `ndarray`), where the host pass costs no transfer.
    pub fn resolve<B: Backend>(self, device: &B::Device) -> Self {
        match self {
            Self::Auto => {
                let name = B::name(device);
                if ["flex", "ndarray"].iter().any(|cpu| name.contains(cpu)) {
                    Self::Blockwise
                } else {
                    Self::Materialised
                }
            }
            other => other,
        }
    }
}

impl Default for PartialFcConfig {
    fn default() -> Self {
        Self {
            sample_rate: 1.0,
            seed: 2048,
            softmax: ShardSoftmax::Auto,
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

/// Which loss the shards compute, over the classes Partial FC samples (all of them at rate 1).
#[derive(Debug)]
pub enum ShardLoss<'a, B: Backend> {
    /// The combined margin softmax.
    Margin(CombinedMargin),
    /// CurricularFace. Its `t` moves with the target cosines of the whole gathered batch (one
    /// all-reduce brings each row's from the shard that holds its class), so that every rank
    /// keeps the `t` one device would.
    CurricularFace(&'a mut CurricularFace),
    /// AdaFace. Every rank holds the whole gathered batch, so its norm statistics move as on
    /// one device.
    AdaFace(&'a mut AdaFace),
    /// LVFace's stable-stage loss with this rank's shard of the prototype bank. The prototype
    /// logits are taken over the same sampled classes as the centres: all of them in the seed
    /// paper's stable stage, fewer in the second step of Progressive Cluster Optimization.
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

        let sampled = self
            .sampler
            .sample(&local_labels, self.shard.num_local(), step);

        if let ShardLoss::Margin(margin) = &loss {
            let margin = *margin;
            if self.config.softmax.resolve::<B::InnerBackend>(&device) == ShardSoftmax::Blockwise {
                let (loss, embedding_grads, centre_grad) =
                    self.blockwise(margin, gathered.clone(), centres, &sampled, comm)?;
                let embedding_grads = comm.all_reduce_sum(embedding_grads)?;
                return Ok(ShardStep {
                    loss,
                    embedding_grad: embedding_grads
                        .slice([rank * batch..(rank + 1) * batch, 0..dim]),
                    centre_grad,
                    sampled,
                    gathered,
                    local_labels,
                });
            }
        }

        let x = Tensor::<B, 2>::from_inner(gathered.clone()).require_grad();
        let w = Tensor::<B, 2>::from_inner(centres).require_grad();
        let selected = sampled.select_centres(w.clone());
        let sampled_labels = sampled.label_tensor::<B>(&device);
        let constant = |s: f64| {
            if s <= CONSTANT_SHIFT_LIMIT {
                Shift::Constant(s)
            } else {
                Shift::RowMaximum
            }
        };

        let mut parts: Vec<SoftmaxPart<B>> = Vec::new();
        match loss {
            ShardLoss::Margin(margin) => {
                let logits = margin
                    .forward_logits(cosine_matrix(x.clone(), selected), sampled_labels.clone());
                parts.push((logits, sampled_labels, 1.0, constant(margin.config().s)));
            }
            ShardLoss::CurricularFace(curricular) => {
                let cos = cosine_matrix(x.clone(), selected);
                let absent = sampled_labels.clone().lower_elem(0);
                let index = sampled_labels.clone().clamp_min(0).reshape([total, 1]);
                let own_targets = cos
                    .clone()
                    .inner()
                    .gather(1, index.inner())
                    .reshape([total])
                    .mask_fill(absent.inner(), 0.0);
                // Adding zeros is exact: every rank gets each row's target cosine bit for bit.
                let targets = comm.all_reduce_sum(own_targets)?;
                let host: Vec<f64> = to_vec(targets.clone()).into_iter().map(f64::from).collect();
                curricular.update_t(&host);
                let logits = curricular.forward_logits_shard(
                    cos,
                    sampled_labels.clone(),
                    Tensor::from_inner(targets),
                );
                parts.push((logits, sampled_labels, 1.0, Shift::RowMaximum));
            }
            ShardLoss::AdaFace(ada) => {
                let scaler = ada.margin_scaler(x.clone());
                let cos = cosine_matrix(x.clone(), selected);
                let logits = ada.forward_logits(cos, sampled_labels.clone(), scaler);
                parts.push((logits, sampled_labels, 1.0, constant(ada.config().s)));
            }
            ShardLoss::Stable { loss, bank } => {
                let s = loss.config().margin.s;
                let lambda = loss.config().prototype_weight;
                let local_label_tensor = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(local_labels.clone(), [total]),
                    &device,
                );
                let lengths = bank.expectation_length(local_label_tensor);
                let logits = loss.forward_logits_with_lengths(
                    x.clone(),
                    selected,
                    sampled_labels.clone(),
                    lengths,
                );
                parts.push((
                    logits,
                    sampled_labels.clone(),
                    1.0 / (1.0 + lambda),
                    constant(s),
                ));
                if lambda > 0.0 {
                    let classes = sampled.index_tensor::<B>(&device);
                    let prototype_logits = bank
                        .forward_logits_of(x.clone(), sampled_labels.clone(), classes)
                        .mul_scalar(s);
                    parts.push((
                        prototype_logits,
                        sampled_labels,
                        lambda / (1.0 + lambda),
                        constant(s),
                    ));
                }
            }
        }
        let shifts = self.shifts(&parts, total, comm)?;

        // One all-reduce carries every part's denominators and target logits.
        let (exp_sums, targets): (Vec<_>, Vec<_>) = parts
            .iter()
            .zip(&shifts)
            .map(|((logits, labels, ..), shift)| {
                ce_parts(logits.clone(), labels.clone(), shift.clone())
            })
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
        for (i, ((_, _, weight, _), shift)) in parts.iter().zip(&shifts).enumerate() {
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
            let row_loss = denominators.clone().log() + shift.clone() - target;
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

    /// The combined margin softmax of the gathered batch over this shard's sampled columns,
    /// blockwise: the loss, the embedding gradient before the sum over shards `[rows, dim]` and
    /// the centre-shard gradient `[num_local, dim]`. The same exchanges as the materialised
    /// step: the row maxima above [`CONSTANT_SHIFT_LIMIT`], then denominators and target logits
    /// in one all-reduce.
    fn blockwise<B: Backend, C: Collective<B>>(
        &self,
        margin: CombinedMargin,
        gathered: Tensor<B, 2>,
        centres: Tensor<B, 2>,
        sampled: &SampledClasses,
        comm: &C,
    ) -> Result<(f32, Tensor<B, 2>, Tensor<B, 2>)> {
        let device = gathered.device();
        let rows = sampled.labels.len();
        let softmax = BlockwiseMarginSoftmax::new(margin);
        let unit = NormalizedRows::new(gathered);
        let columns = if sampled.index.len() == self.shard.num_local() {
            Columns::All
        } else {
            Columns::Rows(&sampled.index)
        };
        let (stats, cosines) =
            softmax.row_statistics_and_cosines(&unit, &centres, columns, &sampled.labels);
        let row_tensor =
            |values: Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(values, [rows]), &device);
        let s = margin.config().s as f32;
        let shift = if f64::from(s) <= CONSTANT_SHIFT_LIMIT {
            vec![s; rows]
        } else {
            to_vec(comm.all_reduce_max(row_tensor(stats.max.clone()).reshape([1, rows]))?)
        };
        let local = Tensor::stack::<2>(
            vec![
                row_tensor(stats.exp_sum(&shift)),
                row_tensor(stats.target.clone()),
            ],
            0,
        );
        let reduced = to_vec(comm.all_reduce_sum(local)?);
        let (denominators, targets) = reduced.split_at(rows);
        if let Some(row) = denominators
            .iter()
            .position(|&d| d.is_nan() || d <= 0.0 || d.is_infinite())
        {
            return Err(PfcError::NonFinite {
                rank: self.shard.rank,
                sample: row,
                value: denominators[row],
            });
        }
        let loss = (0..rows)
            .map(|i| f64::from(denominators[i].ln() + shift[i] - targets[i]))
            .sum::<f64>()
            / rows as f64;
        let weights = vec![1.0 / rows as f32; rows];
        let args = (
            sampled.labels.as_slice(),
            shift.as_slice(),
            denominators,
            weights.as_slice(),
        );
        let grads = softmax.gradients_from(&unit, &centres, columns, args, cosines);
        Ok((
            loss as f32,
            unit.backward(grads.unit_embeddings),
            grads.centres,
        ))
    }

    /// Each part's shift `[rows]`: its constant, or the row maxima over every shard's columns
    /// (one all-reduce for all the parts that need them).
    fn shifts<B: AutodiffBackend, C: Collective<B::InnerBackend>>(
        &self,
        parts: &[SoftmaxPart<B>],
        rows: usize,
        comm: &C,
    ) -> Result<Vec<Tensor<B::InnerBackend, 1>>> {
        let maxima: Vec<Tensor<B::InnerBackend, 1>> = parts
            .iter()
            .filter(|part| part.3 == Shift::RowMaximum)
            .map(|(logits, ..)| {
                let logits = logits.clone().inner();
                if logits.dims()[1] == 0 {
                    // No column here: the lowest value, which any other shard's maximum beats.
                    Tensor::full([rows], f32::MIN, &logits.device())
                } else {
                    logits.max_dim(1).reshape([rows])
                }
            })
            .collect();
        let mut maxima = if maxima.is_empty() {
            Vec::new()
        } else {
            let reduced = comm.all_reduce_max(Tensor::stack::<2>(maxima, 0))?;
            reduced.iter_dim(0).map(|row| row.reshape([rows])).collect()
        }
        .into_iter();
        Ok(parts
            .iter()
            .map(|(logits, _, _, shift)| match shift {
                Shift::Constant(s) => Tensor::<B, 1>::full([rows], *s, &logits.device()).inner(),
                Shift::RowMaximum => maxima.next().expect("one maximum per part"),
            })
            .collect())
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
/// loss, and what is subtracted before `exp`.
type SoftmaxPart<B> = (Tensor<B, 2>, Tensor<B, 1, Int>, f64, Shift);

/// What a softmax subtracts from its logits before `exp`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shift {
    /// The same constant for every row: the logits' upper bound `s`.
    Constant(f64),
    /// Each row's maximum over every shard's columns.
    RowMaximum,
}

/// Per row: `Σ_j exp(z_j - shift)` over this shard's columns, and the target logit (0 when the
/// class is elsewhere).
///
/// # Shapes
/// - logits: `[rows, classes]`
/// - labels: `[rows]`, in `-1..classes`
/// - shift: `[rows]`, a constant of the graph
/// - output: `[rows]`, `[rows]`
fn ce_parts<B: AutodiffBackend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
    shift: Tensor<B::InnerBackend, 1>,
) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let [rows, _] = logits.dims();
    let shift = Tensor::<B, 1>::from_inner(shift).reshape([rows, 1]);
    let exp_sum = (logits.clone() - shift).exp().sum_dim(1).reshape([rows]);
    (exp_sum, target_logits(logits, labels))
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec()
        .expect("float tensor")
}
