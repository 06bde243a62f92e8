//! The rows of a blockwise softmax on the host: L2-normalised rows with the norms their
//! backward needs, and the per-row statistics shards exchange.

use burn::prelude::*;
use rayon::prelude::*;

use crate::cosine::NORM_EPS;
use crate::lanes;

/// Rows L2-normalised on the host, with the norms backward needs.
#[derive(Debug, Clone)]
pub struct NormalizedRows<B: Backend> {
    /// The normalised rows, `[rows, dim]`.
    pub unit: Tensor<B, 2>,
    /// Each row's norm, floored at `F.normalize`'s 1e-12.
    pub norms: Vec<f32>,
}

impl<B: Backend> NormalizedRows<B> {
    /// Normalises `rows` (`[rows, dim]`) as [`l2_normalize`](crate::l2_normalize) does.
    pub fn new(rows: Tensor<B, 2>) -> Self {
        let device = rows.device();
        let [n, dim] = rows.dims();
        let mut values = host(rows);
        let norms = normalize_rows(&mut values, dim);
        Self {
            unit: Tensor::from_data(TensorData::new(values, [n, dim]), &device),
            norms,
        }
    }

    /// The gradient with respect to the rows before normalisation, from the gradient with
    /// respect to the unit rows (`[rows, dim]`).
    pub fn backward(&self, unit_grad: Tensor<B, 2>) -> Tensor<B, 2> {
        let device = unit_grad.device();
        let [n, dim] = unit_grad.dims();
        let mut grad = host(unit_grad);
        normalize_backward(&host(self.unit.clone()), &self.norms, &mut grad, dim);
        Tensor::from_data(TensorData::new(grad, [n, dim]), &device)
    }
}

/// Per row, over one shard's columns: the largest logit, `Σ_j exp(z_j - max)`, and the target
/// logit (0 when the row's class is not among the columns).
#[derive(Debug, Clone, PartialEq)]
pub struct RowStatistics {
    /// Row maxima; `f32::MIN` for a row when there are no columns.
    pub max: Vec<f32>,
    /// `Σ_j exp(z_j - max)`, at least 1 when there are columns.
    pub sum: Vec<f32>,
    /// The margined target logit, 0 for rows labelled `-1`.
    pub target: Vec<f32>,
}

impl RowStatistics {
    /// `Σ_j exp(z_j - shift_i)` per row: what shards add up when every shard shifts by the same
    /// value (a constant, or the all-reduced maximum).
    pub fn exp_sum(&self, shift: &[f32]) -> Vec<f32> {
        self.max
            .iter()
            .zip(&self.sum)
            .zip(shift)
            .map(|((&m, &l), &s)| l * (m - s).exp())
            .collect()
    }

    /// `log Σ_j exp(z_j)` per row.
    pub fn log_sum_exp(&self) -> Vec<f32> {
        self.max
            .iter()
            .zip(&self.sum)
            .map(|(&m, &l)| m + l.ln())
            .collect()
    }
}

pub(super) fn host<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec()
        .expect("a float tensor")
}

/// Divides each row of `values` by its norm (floored at 1e-12) and returns the floored norms.
pub(super) fn normalize_rows(values: &mut [f32], dim: usize) -> Vec<f32> {
    values
        .par_chunks_exact_mut(dim)
        .map(|row| {
            let norm = lanes::dot(row, row).sqrt().max(NORM_EPS as f32);
            row.iter_mut().for_each(|v| *v /= norm);
            norm
        })
        .collect()
}

/// Turns the gradient with respect to unit rows into the gradient with respect to the rows:
/// `(g - u·(u·g)) / ‖x‖`, or `g / 1e-12` where the norm was floored (the floor is a constant).
pub(super) fn normalize_backward(unit: &[f32], norms: &[f32], grad: &mut [f32], dim: usize) {
    let floor = NORM_EPS as f32;
    grad.par_chunks_exact_mut(dim)
        .zip(unit.par_chunks_exact(dim))
        .zip(norms.par_iter())
        .for_each(|((g, u), &norm)| {
            let along = if norm > floor { lanes::dot(g, u) } else { 0.0 };
            for (gv, uv) in g.iter_mut().zip(u) {
                *gv = (*gv - uv * along) / norm;
            }
        });
}
