//! [`BlockwiseMarginSoftmax`]: the combined margin softmax and its gradients computed one block
//! of classes at a time, so that the `[batch, classes]` logits are never stored.
//!
//! Forward, per block of centres: normalise the rows, one cosine GEMM, the margin on each row's
//! target column, and an online log-sum-exp (a running row maximum and a sum rescaled when the
//! maximum moves). Backward, per block: the same cosines recomputed, the softmax formed with the
//! final denominators, and the two gradient GEMMs. What is held at any time is one block of
//! logits and one of normalised centres, whatever the number of classes, besides the centre
//! gradient itself; the price is a fourth GEMM (the recomputed cosines) where storing the logits
//! needs three. Where the cosines fit a budget ([`DEFAULT_COSINE_BUDGET`]), forward keeps them
//! and backward skips that GEMM ([`Cosines`]).
//!
//! The GEMMs run on the backend. The per-element work (normalisation, margin, `exp`, softmax
//! gradient) runs on the host in one pass per block: under burn's CPU backend every element-wise
//! tensor op is a separate pass, so the composed form spends more time there than in the GEMMs.
//! On a GPU backend each block would cross the bus; there the materialised composition
//! ([`CombinedMargin::forward`]) stays the one to use.
//!
//! The split into [`row_statistics`](BlockwiseMarginSoftmax::row_statistics) and
//! [`gradients`](BlockwiseMarginSoftmax::gradients) is what a sharded classifier needs: each
//! shard reports its rows' maxima and sums, the shards agree on the denominators (one or two
//! all-reduces), and each shard forms its own gradients from them.

use burn::prelude::*;
use rayon::prelude::*;

use crate::combined_margin::CombinedMargin;
use crate::lanes;

mod rows;
use rows::{host, normalize_backward};
pub use rows::{NormalizedRows, RowStatistics};

/// Centres per block by default: at width 512 a block of unit centres is 2 MiB and a
/// `[128, 1024]` block of logits 0.5 MiB, both within a core's L2 cache; 1024 was faster than
/// 2048, 4096 and 8192 in `benches/loss.rs` (`docs/performance.md`).
pub const DEFAULT_BLOCK_CLASSES: usize = 1024;

/// The most bytes of cosines [`BlockwiseMarginSoftmax::row_statistics_and_cosines`] keeps for
/// backward by default: `[128, 1_000_000]` f32 cosines. Kept, they save backward the fourth GEMM;
/// above the budget they are recomputed, and memory stays at one block.
pub const DEFAULT_COSINE_BUDGET: usize = 512 << 20;

/// The raw cosines of every block, as forward computed them, for
/// [`BlockwiseMarginSoftmax::gradients_from`].
#[derive(Debug, Clone)]
pub struct Cosines {
    blocks: Vec<Vec<f32>>,
}

/// Which rows of the centre matrix are the softmax's columns.
#[derive(Debug, Clone, Copy)]
pub enum Columns<'a> {
    /// Every row, in order.
    All,
    /// These rows (a Partial FC sample), in this order; column `j` is row `rows[j]`.
    Rows(&'a [i64]),
}

impl Columns<'_> {
    fn count(&self, centre_rows: usize) -> usize {
        match self {
            Columns::All => centre_rows,
            Columns::Rows(rows) => rows.len(),
        }
    }
}

/// What [`BlockwiseMarginSoftmax::gradients`] gives.
#[derive(Debug, Clone)]
pub struct MarginGradients<B: Backend> {
    /// With respect to the unit embeddings, `[batch, dim]` (see [`NormalizedRows::backward`]).
    pub unit_embeddings: Tensor<B, 2>,
    /// With respect to the raw centre matrix, `[centre rows, dim]`; zero on rows that are not
    /// columns.
    pub centres: Tensor<B, 2>,
}

/// The combined margin softmax, blockwise. See the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct BlockwiseMarginSoftmax {
    margin: CombinedMargin,
    block_classes: usize,
    cosine_budget: usize,
}

impl BlockwiseMarginSoftmax {
    /// The softmax of `margin`, [`DEFAULT_BLOCK_CLASSES`] centres per block.
    pub fn new(margin: CombinedMargin) -> Self {
        Self::with_block(margin, DEFAULT_BLOCK_CLASSES)
    }

    /// The softmax of `margin`, `block_classes` centres per block (at least 1).
    pub fn with_block(margin: CombinedMargin, block_classes: usize) -> Self {
        Self {
            margin,
            block_classes: block_classes.max(1),
            cosine_budget: DEFAULT_COSINE_BUDGET,
        }
    }

    /// The same, keeping at most `bytes` of cosines between forward and backward (0: always
    /// recompute them).
    pub fn with_cosine_budget(self, bytes: usize) -> Self {
        Self {
            cosine_budget: bytes,
            ..self
        }
    }

    /// The margin.
    pub fn margin(&self) -> &CombinedMargin {
        &self.margin
    }

    /// Each row's maximum, shifted exp-sum and target logit over `columns` of `centres`.
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]` unit rows
    /// - centres: `[centre rows, dim]`, not necessarily normalised
    /// - labels: `batch` entries in `-1..columns`, in column numbering
    pub fn row_statistics<B: Backend>(
        &self,
        embeddings: &NormalizedRows<B>,
        centres: &Tensor<B, 2>,
        columns: Columns<'_>,
        labels: &[i64],
    ) -> RowStatistics {
        self.statistics(embeddings, centres, columns, labels, false)
            .0
    }

    /// [`row_statistics`](Self::row_statistics), and the cosines for
    /// [`gradients_from`](Self::gradients_from) when they fit the budget
    /// ([`DEFAULT_COSINE_BUDGET`], [`with_cosine_budget`](Self::with_cosine_budget)).
    pub fn row_statistics_and_cosines<B: Backend>(
        &self,
        embeddings: &NormalizedRows<B>,
        centres: &Tensor<B, 2>,
        columns: Columns<'_>,
        labels: &[i64],
    ) -> (RowStatistics, Option<Cosines>) {
        let bytes = labels.len() * columns.count(centres.dims()[0]) * size_of::<f32>();
        self.statistics(
            embeddings,
            centres,
            columns,
            labels,
            bytes <= self.cosine_budget,
        )
    }

    fn statistics<B: Backend>(
        &self,
        embeddings: &NormalizedRows<B>,
        centres: &Tensor<B, 2>,
        columns: Columns<'_>,
        labels: &[i64],
        keep: bool,
    ) -> (RowStatistics, Option<Cosines>) {
        // Per row: running maximum, sum of exp(z - maximum), target logit.
        let mut rows = vec![(f32::MIN, 0.0f32, 0.0f32); labels.len()];
        let mut kept = Vec::new();
        let s = self.margin.config().s as f32;
        self.for_each_block(centres, columns, |start, block| {
            let width = block.rows;
            let mut logits = host(embeddings.unit.clone().matmul(block.unit.transpose()));
            if keep {
                kept.push(logits.clone());
            }
            logits
                .par_chunks_exact_mut(width)
                .zip(rows.par_iter_mut())
                .zip(labels.par_iter())
                .for_each(|((row, (max, sum, target_logit)), &label)| {
                    let target = local_target(label, start, width);
                    let cos_target = target.map(|t| row[t].clamp(-1.0, 1.0));
                    row.iter_mut().for_each(|c| *c = s * c.clamp(-1.0, 1.0));
                    if let (Some(t), Some(c)) = (target, cos_target) {
                        let (value, _) = self.margin.target_cos_and_slope(c);
                        row[t] = s * value as f32;
                        *target_logit = row[t];
                    }
                    let new_max = max.max(lanes::max(row));
                    *sum = *sum * lanes::exp(*max - new_max) + lanes::sum_exp(row, new_max);
                    *max = new_max;
                });
        });
        let stats = RowStatistics {
            max: rows.iter().map(|r| r.0).collect(),
            sum: rows.iter().map(|r| r.1).collect(),
            target: rows.iter().map(|r| r.2).collect(),
        };
        (stats, keep.then_some(Cosines { blocks: kept }))
    }

    /// The gradients of `Σ_i weight_i · (log Σ_j exp(z_ij) - z_i,y_i)`, where the denominators
    /// are `Σ_j exp(z_ij - shift_i)` over every shard's columns. A row labelled `-1` has no target
    /// here but still gets the softmax gradient of these columns (its class is on another shard);
    /// a weight of 0 removes a row.
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]` unit rows
    /// - centres: `[centre rows, dim]`, not necessarily normalised
    /// - labels, shift, denominators, weights: `batch` entries; labels in column numbering
    #[allow(clippy::too_many_arguments)]
    pub fn gradients<B: Backend>(
        &self,
        embeddings: &NormalizedRows<B>,
        centres: &Tensor<B, 2>,
        columns: Columns<'_>,
        labels: &[i64],
        shift: &[f32],
        denominators: &[f32],
        weights: &[f32],
    ) -> MarginGradients<B> {
        let args = (labels, shift, denominators, weights);
        self.gradients_from(embeddings, centres, columns, args, None)
    }

    /// [`gradients`](Self::gradients) with `(labels, shift, denominators, weights)`, from the
    /// cosines [`row_statistics_and_cosines`](Self::row_statistics_and_cosines) kept for the
    /// same embeddings, centres and columns, or recomputed when there are none.
    pub fn gradients_from<B: Backend>(
        &self,
        embeddings: &NormalizedRows<B>,
        centres: &Tensor<B, 2>,
        columns: Columns<'_>,
        (labels, shift, denominators, weights): (&[i64], &[f32], &[f32], &[f32]),
        cosines: Option<Cosines>,
    ) -> MarginGradients<B> {
        let mut kept = cosines.map(|c| c.blocks.into_iter());
        let device = centres.device();
        let [centre_rows, dim] = centres.dims();
        let batch = labels.len();
        let s = self.margin.config().s as f32;
        let mut unit_grad = Tensor::<B, 2>::zeros([batch, dim], &device);
        let mut centre_grad = vec![0.0f32; centre_rows * dim];
        self.for_each_block(centres, columns, |start, block| {
            let width = block.rows;
            let kept_block = kept.as_mut().and_then(Iterator::next);
            let mut cos = kept_block.unwrap_or_else(|| {
                host(
                    embeddings
                        .unit
                        .clone()
                        .matmul(block.unit.clone().transpose()),
                )
            });
            assert_eq!(cos.len(), batch * width, "cosines kept for other inputs");
            cos.par_chunks_exact_mut(width)
                .enumerate()
                .for_each(|(i, row)| {
                    let target = local_target(labels[i], start, width);
                    let cos_target = target.map(|t| row[t]);
                    // d loss / d cos = weight · s · (softmax - one-hot), zero where the clamp held
                    // the cosine; the target column is redone below with its margin.
                    let scale = weights[i] / denominators[i] * s;
                    let shift = shift[i];
                    for c in row.iter_mut() {
                        let p = lanes::exp(s * c.clamp(-1.0, 1.0) - shift) * scale;
                        *c = if (-1.0..=1.0).contains(c) { p } else { 0.0 };
                    }
                    if let (Some(t), Some(c)) = (target, cos_target) {
                        let (value, slope) = self.margin.target_cos_and_slope(c.clamp(-1.0, 1.0));
                        let p = lanes::exp(s * value as f32 - shift) * scale;
                        row[t] = if (-1.0..=1.0).contains(&c) {
                            (p - weights[i] * s) * slope as f32
                        } else {
                            0.0
                        };
                    }
                });
            let cos_grad = Tensor::<B, 2>::from_data(TensorData::new(cos, [batch, width]), &device);
            unit_grad = unit_grad.clone() + cos_grad.clone().matmul(block.unit.clone());
            let mut grad = host(cos_grad.transpose().matmul(embeddings.unit.clone()));
            // The block's unit rows are no longer shared: this takes them without a copy.
            let place = block.place;
            normalize_backward(&host(block.unit), &block.norms, &mut grad, dim);
            match place.columns {
                Columns::All => {
                    let r = place.first * dim;
                    centre_grad[r..r + grad.len()].copy_from_slice(&grad);
                }
                Columns::Rows(_) => {
                    for (k, row) in grad.chunks_exact(dim).enumerate() {
                        let r = place.row_of(k) * dim;
                        centre_grad[r..r + dim].copy_from_slice(row);
                    }
                }
            }
        });
        MarginGradients {
            unit_embeddings: unit_grad,
            centres: Tensor::from_data(TensorData::new(centre_grad, [centre_rows, dim]), &device),
        }
    }

    /// The mean loss over rows with a label (0 when none has), and its gradients with respect
    /// to the raw embeddings and centres: what [`CombinedMargin::forward`] and a backward pass
    /// give, without the `[batch, classes]` logits.
    ///
    /// # Shapes
    /// - embeddings: `[batch, dim]`, not necessarily normalised
    /// - centres: `[classes, dim]`
    /// - labels: `batch` entries in `-1..classes`
    /// - output: the loss, `[batch, dim]`, `[classes, dim]`
    pub fn loss_and_gradients<B: Backend>(
        &self,
        embeddings: Tensor<B, 2>,
        centres: Tensor<B, 2>,
        labels: &[i64],
    ) -> (f32, Tensor<B, 2>, Tensor<B, 2>) {
        let unit = NormalizedRows::new(embeddings);
        let (stats, cosines) =
            self.row_statistics_and_cosines(&unit, &centres, Columns::All, labels);
        let labelled = labels.iter().filter(|&&y| y >= 0).count();
        let lse = stats.log_sum_exp();
        let loss = labels
            .iter()
            .zip(lse.iter().zip(&stats.target))
            .filter(|(&y, _)| y >= 0)
            .map(|(_, (&l, &t))| f64::from(l - t))
            .sum::<f64>()
            / labelled.max(1) as f64;
        let weights: Vec<f32> = labels
            .iter()
            .map(|&y| if y >= 0 { 1.0 / labelled as f32 } else { 0.0 })
            .collect();
        let args = (
            labels,
            stats.max.as_slice(),
            stats.sum.as_slice(),
            weights.as_slice(),
        );
        let grads = self.gradients_from(&unit, &centres, Columns::All, args, cosines);
        let embedding_grad = unit.backward(grads.unit_embeddings);
        (loss as f32, embedding_grad, grads.centres)
    }

    /// Calls `f(first column, block)` for each block of columns, in order.
    fn for_each_block<B: Backend>(
        &self,
        centres: &Tensor<B, 2>,
        columns: Columns<'_>,
        mut f: impl FnMut(usize, CentreBlock<'_, B>),
    ) {
        let [centre_rows, dim] = centres.dims();
        let count = columns.count(centre_rows);
        let device = centres.device();
        for start in (0..count).step_by(self.block_classes) {
            let end = (start + self.block_classes).min(count);
            let raw = match columns {
                Columns::All => centres.clone().slice([start..end, 0..dim]),
                Columns::Rows(rows) => {
                    let index = &rows[start..end];
                    let index = Tensor::<B, 1, Int>::from_data(
                        TensorData::new(index.to_vec(), [index.len()]),
                        &device,
                    );
                    centres.clone().select(0, index)
                }
            };
            let rows = NormalizedRows::new(raw);
            let block = CentreBlock {
                unit: rows.unit,
                norms: rows.norms,
                rows: end - start,
                place: BlockPlace {
                    first: start,
                    columns,
                },
            };
            f(start, block);
        }
    }
}

/// One block of normalised centres.
struct CentreBlock<'a, B: Backend> {
    unit: Tensor<B, 2>,
    norms: Vec<f32>,
    rows: usize,
    place: BlockPlace<'a>,
}

/// Where a block's columns are in the centre matrix.
#[derive(Clone, Copy)]
struct BlockPlace<'a> {
    first: usize,
    columns: Columns<'a>,
}

impl BlockPlace<'_> {
    /// The centre-matrix row of the block's `k`-th column.
    fn row_of(&self, k: usize) -> usize {
        match self.columns {
            Columns::All => self.first + k,
            Columns::Rows(rows) => rows[self.first + k] as usize,
        }
    }
}

/// The column of `label` inside a block of `width` columns starting at `start`.
fn local_target(label: i64, start: usize, width: usize) -> Option<usize> {
    let label = usize::try_from(label).ok()?;
    (start..start + width)
        .contains(&label)
        .then(|| label - start)
}
