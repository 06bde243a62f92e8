//! [`RocCurve`]: the ROC of pair scores, with the points of `sklearn.metrics.roc_curve`.
//!
//! Scores are similarities: larger means more alike, and a pair is accepted when
//! `score >= threshold`. One operating point per distinct score, by decreasing score, preceded
//! by the point `(0, 0)` at threshold `+inf`. `roc_curve` with its default
//! `drop_intermediate=True` then keeps only the points where the curve bends: a point is dropped
//! when both its false- and true-positive counts are the mean of its neighbours'.
//! [`RocCurve::sklearn_points`] returns that subset; the full curve is kept for the figures that
//! must not depend on it.

use serde::{Deserialize, Serialize};

use crate::error::{check_finite, EvalError, Result};

/// The ROC of a set of scored pairs; see the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    /// False-positive rate of each point, non-decreasing.
    pub fpr: Vec<f64>,
    /// True-positive rate of each point, non-decreasing.
    pub tpr: Vec<f64>,
    /// Score threshold of each point; the first is `+inf` (accept nothing).
    pub thresholds: Vec<f64>,
    /// Number of genuine pairs.
    pub genuine: usize,
    /// Number of impostor pairs.
    pub impostors: usize,
    false_positives: Vec<u64>,
    true_positives: Vec<u64>,
}

impl RocCurve {
    /// The ROC of `scores` (larger = more alike) with `labels` (`true` = genuine).
    ///
    /// Fails if the lengths differ, a score is not finite, or a class is missing.
    pub fn new(scores: &[f64], labels: &[bool]) -> Result<Self> {
        if scores.len() != labels.len() {
            return Err(EvalError::shape(
                "labels per score",
                scores.len(),
                labels.len(),
            ));
        }
        check_finite("score", scores.iter().copied())?;
        let genuine = labels.iter().filter(|&&l| l).count();
        let impostors = labels.len() - genuine;
        if genuine == 0 || impostors == 0 {
            return Err(EvalError::OneClass { genuine, impostors });
        }
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let mut false_positives = vec![0];
        let mut true_positives = vec![0];
        let mut thresholds = vec![f64::INFINITY];
        let (mut fp, mut tp) = (0u64, 0u64);
        for (k, &i) in order.iter().enumerate() {
            if labels[i] {
                tp += 1;
            } else {
                fp += 1;
            }
            let last_of_score = order
                .get(k + 1)
                .is_none_or(|&next| scores[next] != scores[i]);
            if last_of_score {
                false_positives.push(fp);
                true_positives.push(tp);
                thresholds.push(scores[i]);
            }
        }
        let fpr = false_positives
            .iter()
            .map(|&f| f as f64 / fp as f64)
            .collect();
        let tpr = true_positives
            .iter()
            .map(|&t| t as f64 / tp as f64)
            .collect();
        Ok(Self {
            fpr,
            tpr,
            thresholds,
            genuine,
            impostors,
            false_positives,
            true_positives,
        })
    }

    /// Number of points of the full curve (distinct scores plus the origin).
    pub fn len(&self) -> usize {
        self.fpr.len()
    }

    /// Whether the curve has no point; never true for a constructed curve.
    pub fn is_empty(&self) -> bool {
        self.fpr.is_empty()
    }

    /// Indices of the points `sklearn.metrics.roc_curve(..., drop_intermediate=True)` returns.
    ///
    /// sklearn decides on the curve without the origin: the first and last distinct-score points
    /// are kept, and an inner point is kept where the second difference of the false- or of the
    /// true-positive counts is non-zero. The origin is then prepended.
    pub fn sklearn_points(&self) -> Vec<usize> {
        let n = self.len() - 1; // points without the origin, at indices 1..=n
        let mut keep = vec![0];
        if n <= 2 {
            keep.extend(1..=n);
            return keep;
        }
        let (f, t) = (&self.false_positives, &self.true_positives);
        for k in 1..=n {
            let inner = k > 1 && k < n;
            let bends = || {
                let second = |v: &[u64]| (v[k - 1] + v[k + 1]) as i128 - 2 * v[k] as i128;
                second(f) != 0 || second(t) != 0
            };
            if !inner || bends() {
                keep.push(k);
            }
        }
        keep
    }

    /// Area under the curve by the trapezoidal rule (as `sklearn.metrics.auc`).
    pub fn auc(&self) -> f64 {
        self.fpr
            .windows(2)
            .zip(self.tpr.windows(2))
            .map(|(x, y)| (x[1] - x[0]) * (y[1] + y[0]) / 2.0)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_distinct_scores_by_decreasing_score() {
        // Scores 0.9 (g), 0.8 (i), 0.8 (g), 0.3 (i).
        let roc = RocCurve::new(&[0.9, 0.8, 0.8, 0.3], &[true, false, true, false]).unwrap();
        assert_eq!(roc.thresholds, vec![f64::INFINITY, 0.9, 0.8, 0.3]);
        assert_eq!(roc.fpr, vec![0.0, 0.0, 0.5, 1.0]);
        assert_eq!(roc.tpr, vec![0.0, 0.5, 1.0, 1.0]);
        // Area: trapezoids (0..0.5) -> (0.5 + 1) / 2 * 0.5, (0.5..1) -> 0.5.
        assert!((roc.auc() - 0.875).abs() < 1e-15);
    }

    #[test]
    fn intermediate_points_on_straight_runs_are_dropped() {
        // Five impostors below one genuine pair: a horizontal run of equal steps.
        let scores = [0.9, 0.5, 0.4, 0.3, 0.2, 0.1];
        let labels = [true, false, false, false, false, false];
        let roc = RocCurve::new(&scores, &labels).unwrap();
        assert_eq!(roc.len(), 7);
        // Without the origin: fps 0,1,2,3,4,5 and tps 1,1,1,1,1,1: only the ends bend.
        assert_eq!(roc.sklearn_points(), vec![0, 1, 6]);
        // An uneven step keeps its corner: fps 0,1,3 (tied impostors), tps 1,1,1.
        let roc = RocCurve::new(&[0.9, 0.5, 0.3, 0.3], &[true, false, false, false]).unwrap();
        assert_eq!(roc.sklearn_points(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn one_class_and_nan_are_errors() {
        assert!(matches!(
            RocCurve::new(&[0.1, 0.2], &[true, true]),
            Err(EvalError::OneClass {
                genuine: 2,
                impostors: 0
            })
        ));
        assert!(matches!(
            RocCurve::new(&[0.1, f64::NAN], &[true, false]),
            Err(EvalError::NotFinite { index: 1, .. })
        ));
        assert!(RocCurve::new(&[0.1], &[true, false]).is_err());
    }
}
