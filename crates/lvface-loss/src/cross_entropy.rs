//! Numerically stable softmax cross-entropy with "not in this shard" labels.
//!
//! A label of `-1` marks a row whose class is not among the columns of `logits` (in the sharded
//! FC the class lives on another device). Such a row has no target here: it contributes neither
//! loss nor gradient, and it is not counted in the mean.

use burn::prelude::*;

/// `log Σ_j exp(logits[i, j])` per row, computed as `m + log Σ exp(z - m)` with `m` the row
/// maximum, so nothing overflows whatever the scale or the number of classes: every exponent is
/// at most 0 and the sum at most the number of classes. The maximum is detached; the result's
/// gradient does not depend on it.
///
/// # Shapes
/// - logits: `[batch, classes]`
/// - output: `[batch]`
pub fn log_sum_exp<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 1> {
    let [batch, _] = logits.dims();
    let max = logits.clone().max_dim(1).detach();
    ((logits - max.clone()).exp().sum_dim(1).log() + max).reshape([batch])
}

/// The logit of each row's label, and 0 for rows labelled `-1`.
///
/// # Shapes
/// - logits: `[batch, classes]`
/// - labels: `[batch]`, in `-1..classes`
/// - output: `[batch]`
pub fn target_logits<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [batch, _] = logits.dims();
    let absent = labels.clone().lower_elem(0).reshape([batch, 1]);
    let index = labels.clamp_min(0).reshape([batch, 1]);
    logits
        .gather(1, index)
        .mask_fill(absent, 0.0)
        .reshape([batch])
}

/// Per-row softmax cross-entropy `logsumexp(z_i) - z_{i, y_i}`; 0 for rows labelled `-1`.
///
/// # Shapes
/// - logits: `[batch, classes]`
/// - labels: `[batch]`, in `-1..classes`
/// - output: `[batch]`
pub fn softmax_cross_entropy_per_row<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let absent = labels.clone().lower_elem(0);
    let target = target_logits(logits.clone(), labels);
    (log_sum_exp(logits) - target).mask_fill(absent, 0.0)
}

/// Mean softmax cross-entropy over the rows that have a label in this shard (0 when none has).
///
/// # Shapes
/// - logits: `[batch, classes]`
/// - labels: `[batch]`, in `-1..classes`
/// - output: `[1]`
pub fn softmax_cross_entropy<B: Backend>(
    logits: Tensor<B, 2>,
    labels: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let absent = labels.clone().lower_elem(0);
    let per_row = softmax_cross_entropy_per_row(logits, labels);
    let count = per_row
        .ones_like()
        .mask_fill(absent, 0.0)
        .sum()
        .clamp_min(1.0)
        .detach();
    per_row.sum() / count
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type B = Flex;

    fn naive(logits: &[Vec<f64>], labels: &[i64]) -> f64 {
        let mut total = 0.0;
        let mut count = 0;
        for (row, &y) in logits.iter().zip(labels) {
            if y < 0 {
                continue;
            }
            let sum: f64 = row.iter().map(|z| z.exp()).sum();
            total += sum.ln() - row[y as usize];
            count += 1;
        }
        total / count.max(1) as f64
    }

    #[test]
    fn matches_a_naive_loop_and_skips_absent_rows() {
        let device = Default::default();
        let rows = vec![
            vec![0.5, -1.0, 2.0],
            vec![1.0, 1.0, 1.0],
            vec![-3.0, 0.0, 0.25],
        ];
        let labels = [2i64, -1, 0];
        let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        let logits = Tensor::<B, 2>::from_data(TensorData::new(flat, [3, 3]), &device);
        let loss = softmax_cross_entropy(logits, Tensor::from_data(labels, &device));
        let got = loss.into_scalar() as f64;
        let expected = naive(&rows, &labels);
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    }

    #[test]
    fn no_overflow_at_scale_64_with_many_classes() {
        let device = Default::default();
        // exp(96) is about 4.9e41, beyond f32's largest value (3.4e38): an unshifted sum
        // overflows to infinity. The shifted sum is exactly the number of classes.
        let classes = 200_000;
        let logits = Tensor::<B, 2>::full([2, classes], 96.0, &device);
        let labels = Tensor::from_data([0i64, 5], &device);
        let got = softmax_cross_entropy(logits, labels).into_scalar() as f64;
        let expected = (classes as f64).ln();
        assert!((got - expected).abs() < 1e-4, "{got} vs {expected}");
    }

    #[test]
    fn gradient_is_softmax_minus_one_hot_and_zero_for_absent_rows() {
        let device = Default::default();
        let rows = [[0.5f32, -1.0, 2.0], [1.0, 2.0, 3.0]];
        let logits = Tensor::<Autodiff<B>, 2>::from_floats(rows, &device).require_grad();
        let labels = Tensor::from_data([1i64, -1], &device);
        let grads = softmax_cross_entropy(logits.clone(), labels).backward();
        let grad = logits
            .grad(&grads)
            .unwrap()
            .to_data()
            .to_vec::<f32>()
            .unwrap();
        let sum: f32 = rows[0].iter().map(|z| z.exp()).sum();
        for j in 0..3 {
            let p = rows[0][j].exp() / sum;
            let expected = p - if j == 1 { 1.0 } else { 0.0 };
            assert!((grad[j] - expected).abs() < 1e-6, "{grad:?}");
            assert_eq!(grad[3 + j], 0.0);
        }
    }
}
