//! [`Verification`]: insightface's 10-fold verification protocol (`eval/verification.py`,
//! `evaluate`, `calculate_roc`, `calculate_val`) on pair distances.
//!
//! - Score: squared L2 distance of L2-normalised embeddings; a pair is predicted "same" when
//!   `dist < t`.
//! - Thresholds: `t_i = i * step` for `i < ceil(max / step)`, exactly the values of
//!   `np.arange(0, max, step)` (0, 0.01, …, 3.99 by default).
//! - Folds: contiguous, no shuffle, sized as `sklearn.model_selection.KFold(n_splits=k)`: every
//!   fold has `n / k` pairs and the first `n % k` folds one more.
//! - Per fold: the threshold with the best accuracy on the other `k - 1` folds (the first best,
//!   as `np.argmax`) is applied to the fold. The result is the mean and the population standard
//!   deviation (`np.std`) of the `k` fold accuracies.
//! - VAL@FAR: per fold, the threshold on the finer grid (step 0.001) where the training folds'
//!   FAR reaches the target (see [`interpolate_threshold`](crate::interpolate_threshold)), then
//!   VAL and FAR of the fold at that threshold; mean and std of VAL, mean of FAR.
//!
//! **NOTE:** distances are computed in f64 from the f32 embeddings; insightface computes them in
//! f32 (and compares with thresholds rounded to f32 under NumPy 1). The figures differ only when
//! a distance lies within about 1e-7 of a grid threshold.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::embeddings::Embeddings;
use crate::error::{check_finite, EvalError, Result};
use crate::val_far::{accepts, interpolate_threshold};

/// Configuration of the k-fold protocol. The defaults are insightface's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerificationConfig {
    /// Number of contiguous folds.
    pub folds: usize,
    /// Step of the accuracy threshold grid.
    pub threshold_step: f64,
    /// End (excluded) of both threshold grids; 4 is the largest squared distance of unit vectors.
    pub threshold_max: f64,
    /// The false-accept rate of VAL@FAR.
    pub val_far: f64,
    /// Step of the VAL threshold grid.
    pub val_threshold_step: f64,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        Self {
            folds: 10,
            threshold_step: 0.01,
            threshold_max: 4.0,
            val_far: 1e-3,
            val_threshold_step: 0.001,
        }
    }
}

impl VerificationConfig {
    /// Checks every field; the error names the key (under `eval.verification`) and the value.
    pub fn validate(&self) -> Result<()> {
        let key = |name: &str| format!("eval.verification.{name}");
        if self.folds < 2 {
            return Err(EvalError::invalid(
                key("folds"),
                "must be at least 2",
                self.folds,
            ));
        }
        if !(self.threshold_max.is_finite() && self.threshold_max > 0.0) {
            return Err(EvalError::invalid(
                key("threshold_max"),
                "must be positive and finite",
                self.threshold_max,
            ));
        }
        for (name, step) in [
            ("threshold_step", self.threshold_step),
            ("val_threshold_step", self.val_threshold_step),
        ] {
            if !(step.is_finite() && step > 0.0) {
                return Err(EvalError::invalid(
                    key(name),
                    "must be positive and finite",
                    step,
                ));
            }
            if self.threshold_max / step > 1e6 {
                return Err(EvalError::invalid(
                    key(name),
                    format!(
                        "must give at most 1e6 thresholds below {}",
                        self.threshold_max
                    ),
                    step,
                ));
            }
        }
        if !(self.val_far > 0.0 && self.val_far <= 1.0) {
            return Err(EvalError::invalid(
                key("val_far"),
                "must be in (0, 1]",
                self.val_far,
            ));
        }
        Ok(())
    }

    /// The protocol, with its threshold grids.
    ///
    /// # Panics
    /// If the configuration is invalid.
    pub fn init(&self) -> Verification {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
        Verification {
            config: *self,
            thresholds: threshold_grid(self.threshold_max, self.threshold_step),
            val_thresholds: threshold_grid(self.threshold_max, self.val_threshold_step),
        }
    }
}

/// `np.arange(0, max, step)`: `i * step` for `i < ceil(max / step)`.
pub fn threshold_grid(max: f64, step: f64) -> Vec<f64> {
    let count = (max / step).ceil() as usize;
    (0..count).map(|i| i as f64 * step).collect()
}

/// The test ranges of `KFold(n_splits=folds, shuffle=False)` over `pairs` indices.
///
/// Fails with [`EvalError::TooFewPairs`] if `pairs < folds`.
pub fn fold_ranges(pairs: usize, folds: usize) -> Result<Vec<Range<usize>>> {
    if folds == 0 || pairs < folds {
        return Err(EvalError::TooFewPairs { pairs, folds });
    }
    let (base, extra) = (pairs / folds, pairs % folds);
    let mut start = 0;
    Ok((0..folds)
        .map(|f| {
            let end = start + base + usize::from(f < extra);
            let range = start..end;
            start = end;
            range
        })
        .collect())
}

/// The k-fold protocol with its threshold grids; made by [`VerificationConfig::init`].
#[derive(Debug, Clone)]
pub struct Verification {
    config: VerificationConfig,
    thresholds: Vec<f64>,
    val_thresholds: Vec<f64>,
}

/// All figures of one verification set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationReport {
    /// Number of pairs.
    pub pairs: usize,
    /// Genuine ("same") pairs.
    pub genuine: usize,
    /// Impostor pairs.
    pub impostors: usize,
    /// Pairs in each fold.
    pub fold_sizes: Vec<usize>,
    /// Mean of the fold accuracies ("Accuracy-Flip" in insightface logs).
    pub accuracy: f64,
    /// Population standard deviation of the fold accuracies.
    pub accuracy_std: f64,
    /// Accuracy of each fold at its threshold.
    pub fold_accuracies: Vec<f64>,
    /// Best squared-distance threshold of each fold, chosen on the other folds.
    pub fold_thresholds: Vec<f64>,
    /// Mean of `fold_thresholds`: the squared-distance threshold reported in one line.
    pub threshold: f64,
    /// The same threshold as a cosine similarity, `1 - threshold / 2`.
    pub threshold_cosine: f64,
    /// The FAR target of VAL.
    pub val_far_target: f64,
    /// Mean verification rate at the VAL thresholds.
    pub val: f64,
    /// Population standard deviation of the fold VALs.
    pub val_std: f64,
    /// Mean false-accept rate at the VAL thresholds.
    pub far: f64,
    /// VAL of each fold.
    pub fold_vals: Vec<f64>,
    /// FAR of each fold.
    pub fold_fars: Vec<f64>,
    /// Interpolated VAL threshold of each fold.
    pub fold_val_thresholds: Vec<f64>,
    /// Mean L2 norm of the raw embeddings (insightface's XNorm), when embeddings were given.
    pub xnorm: Option<f64>,
}

/// Predicted-same counts per threshold, for one group of pairs.
#[derive(Debug, Clone)]
struct Accepted {
    genuine: Vec<u64>,
    impostor: Vec<u64>,
}

impl Accepted {
    /// Counts, for every `t_j` of the sorted grid, the pairs of `range` with `dist < t_j`.
    fn count(thresholds: &[f64], dist: &[f64], issame: &[bool], range: Range<usize>) -> Self {
        let n = thresholds.len();
        let mut genuine = vec![0u64; n + 1];
        let mut impostor = vec![0u64; n + 1];
        for i in range {
            // `dist < t_j` exactly for `j >= first`, the number of grid values `<= dist`.
            let first = thresholds.partition_point(|&t| t <= dist[i]);
            if issame[i] {
                genuine[first] += 1;
            } else {
                impostor[first] += 1;
            }
        }
        for j in 1..=n {
            genuine[j] += genuine[j - 1];
            impostor[j] += impostor[j - 1];
        }
        genuine.truncate(n);
        impostor.truncate(n);
        Self { genuine, impostor }
    }
}

impl Verification {
    /// The configuration.
    pub fn config(&self) -> &VerificationConfig {
        &self.config
    }

    /// The accuracy threshold grid.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// Runs the protocol on embeddings in pair order (rows `2i`, `2i + 1` form pair `i`).
    ///
    /// With `flipped` (the embeddings of the mirrored images), the score uses the flip-sum
    /// `embeddings + flipped`, and XNorm is the mean raw norm over both sets, as insightface.
    /// Without it, `embeddings` are used as given (already flip-summed or not) and XNorm is their
    /// mean norm.
    pub fn evaluate_embeddings(
        &self,
        embeddings: &Embeddings,
        flipped: Option<&Embeddings>,
        issame: &[bool],
    ) -> Result<VerificationReport> {
        let (summed, xnorm) = match flipped {
            Some(flipped) => {
                let summed = embeddings.sum(flipped)?;
                let mut norms = embeddings.norms();
                norms.extend(flipped.norms());
                let mean = norms.iter().sum::<f64>() / norms.len().max(1) as f64;
                (summed, Some(mean))
            }
            None => (embeddings.clone(), embeddings.mean_norm()),
        };
        if summed.rows() != 2 * issame.len() {
            return Err(EvalError::shape(
                "embedding rows (two per issame label)",
                2 * issame.len(),
                summed.rows(),
            ));
        }
        let dist = summed.pair_distances()?;
        let mut report = self.evaluate_distances(&dist, issame)?;
        report.xnorm = xnorm;
        Ok(report)
    }

    /// Runs the protocol on squared L2 distances (smaller = more alike) and labels.
    ///
    /// Fails if the lengths differ, a distance is not finite, there are fewer pairs than folds,
    /// or a fold lacks genuine or impostor pairs (insightface divides by zero there).
    pub fn evaluate_distances(&self, dist: &[f64], issame: &[bool]) -> Result<VerificationReport> {
        if dist.len() != issame.len() {
            return Err(EvalError::shape(
                "issame labels per distance",
                dist.len(),
                issame.len(),
            ));
        }
        check_finite("distance", dist.iter().copied())?;
        let folds = fold_ranges(dist.len(), self.config.folds)?;
        for (fold, range) in folds.iter().enumerate() {
            let same = issame[range.clone()].iter().filter(|&&s| s).count();
            let diff = range.len() - same;
            if same == 0 || diff == 0 {
                return Err(EvalError::DegenerateFold {
                    fold,
                    start: range.start,
                    end: range.end,
                    same,
                    diff,
                });
            }
        }
        let genuine = issame.iter().filter(|&&s| s).count();
        let impostors = issame.len() - genuine;

        let (fold_accuracies, fold_thresholds) = self.accuracy_folds(dist, issame, &folds);
        let (fold_vals, fold_fars, fold_val_thresholds) = self.val_folds(dist, issame, &folds);
        let threshold = mean(&fold_thresholds);
        Ok(VerificationReport {
            pairs: dist.len(),
            genuine,
            impostors,
            fold_sizes: folds.iter().map(|r| r.len()).collect(),
            accuracy: mean(&fold_accuracies),
            accuracy_std: std(&fold_accuracies),
            fold_accuracies,
            fold_thresholds,
            threshold,
            threshold_cosine: 1.0 - threshold / 2.0,
            val_far_target: self.config.val_far,
            val: mean(&fold_vals),
            val_std: std(&fold_vals),
            far: mean(&fold_fars),
            fold_vals,
            fold_fars,
            fold_val_thresholds,
            xnorm: None,
        })
    }

    /// `calculate_roc`'s accuracy part: per fold, the test accuracy at the first threshold with
    /// the best training accuracy.
    fn accuracy_folds(
        &self,
        dist: &[f64],
        issame: &[bool],
        folds: &[Range<usize>],
    ) -> (Vec<f64>, Vec<f64>) {
        let t = &self.thresholds;
        let all = Accepted::count(t, dist, issame, 0..dist.len());
        let genuine_all = issame.iter().filter(|&&s| s).count() as u64;
        let impostor_all = dist.len() as u64 - genuine_all;
        let mut accuracies = Vec::with_capacity(folds.len());
        let mut thresholds = Vec::with_capacity(folds.len());
        for range in folds {
            let test = Accepted::count(t, dist, issame, range.clone());
            let genuine_test = issame[range.clone()].iter().filter(|&&s| s).count() as u64;
            let impostor_test = range.len() as u64 - genuine_test;
            let impostor_train = impostor_all - impostor_test;
            // Correct training predictions at each threshold: tp + tn. The accuracy is this over
            // a fixed count, so the first maximum of the counts is `np.argmax` of the accuracies.
            let mut best = 0;
            let mut best_correct = 0;
            for j in 0..t.len() {
                let tp = all.genuine[j] - test.genuine[j];
                let fp = all.impostor[j] - test.impostor[j];
                let correct = tp + (impostor_train - fp);
                if correct > best_correct || j == 0 {
                    best = j;
                    best_correct = correct;
                }
            }
            let correct = test.genuine[best] + (impostor_test - test.impostor[best]);
            accuracies.push(correct as f64 / range.len() as f64);
            thresholds.push(t[best]);
        }
        (accuracies, thresholds)
    }

    /// `calculate_val`: per fold, VAL and FAR at the interpolated training threshold.
    fn val_folds(
        &self,
        dist: &[f64],
        issame: &[bool],
        folds: &[Range<usize>],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let t = &self.val_thresholds;
        let all = Accepted::count(t, dist, issame, 0..dist.len());
        let impostor_all = issame.iter().filter(|&&s| !s).count() as u64;
        let (mut vals, mut fars, mut thresholds) = (vec![], vec![], vec![]);
        for range in folds {
            let test = Accepted::count(t, dist, issame, range.clone());
            let genuine_test = issame[range.clone()].iter().filter(|&&s| s).count();
            let impostor_test = range.len() - genuine_test;
            let impostor_train = (impostor_all - impostor_test as u64) as f64;
            let far_train: Vec<f64> = (0..t.len())
                .map(|j| (all.impostor[j] - test.impostor[j]) as f64 / impostor_train)
                .collect();
            let threshold = interpolate_threshold(&far_train, t, self.config.val_far);
            let (ta, fa) = accepts(dist, issame, range.clone(), threshold);
            vals.push(ta as f64 / genuine_test as f64);
            fars.push(fa as f64 / impostor_test as f64);
            thresholds.push(threshold);
        }
        (vals, fars, thresholds)
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Population standard deviation, as `np.std`.
fn std(values: &[f64]) -> f64 {
    let m = mean(values);
    (values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / values.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_match_numpy_arange() {
        let t = threshold_grid(4.0, 0.01);
        assert_eq!(t.len(), 400);
        assert_eq!(t[0], 0.0);
        assert_eq!(t[7], 7.0 * 0.01);
        assert_eq!(t[399], 399.0 * 0.01);
        assert_eq!(threshold_grid(4.0, 0.001).len(), 4000);
    }

    #[test]
    fn fold_sizes_follow_kfold() {
        let sizes = |n, k| {
            fold_ranges(n, k)
                .unwrap()
                .iter()
                .map(|r| r.len())
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(6000, 10), vec![600; 10]);
        assert_eq!(sizes(23, 10), vec![3, 3, 3, 2, 2, 2, 2, 2, 2, 2]);
        let ranges = fold_ranges(23, 10).unwrap();
        assert_eq!(ranges[0], 0..3);
        assert_eq!(ranges[3], 9..11);
        assert_eq!(ranges[9], 21..23);
        assert!(matches!(
            fold_ranges(9, 10),
            Err(EvalError::TooFewPairs {
                pairs: 9,
                folds: 10
            })
        ));
    }

    #[test]
    fn accepted_counts_are_strict() {
        let t = [0.0, 1.0, 2.0];
        let dist = [0.0, 1.0, 1.5, 2.5];
        let same = [true, false, true, false];
        let a = Accepted::count(&t, &dist, &same, 0..4);
        // t=0: none; t=1: dist 0; t=2: dist 0, 1, 1.5.
        assert_eq!(a.genuine, vec![0, 1, 2]);
        assert_eq!(a.impostor, vec![0, 0, 1]);
    }

    #[test]
    fn config_rules() {
        assert!(VerificationConfig::default().validate().is_ok());
        let bad = VerificationConfig {
            folds: 1,
            ..Default::default()
        };
        let msg = bad.validate().unwrap_err().to_string();
        assert_eq!(msg, "eval.verification.folds must be at least 2, got 1");
        let bad = VerificationConfig {
            val_far: 0.0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = VerificationConfig {
            threshold_step: 1e-9,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let parsed: std::result::Result<VerificationConfig, _> =
            serde_json::from_str(r#"{"folds": 5, "treshold_step": 0.1}"#);
        assert!(parsed.is_err(), "unknown keys are refused");
        let parsed: VerificationConfig = serde_json::from_str(r#"{"folds": 5}"#).unwrap();
        assert_eq!(parsed.folds, 5);
        assert_eq!(parsed.threshold_step, 0.01);
    }

    #[test]
    fn std_is_population() {
        assert!((std(&[1.0, 3.0]) - 1.0).abs() < 1e-15);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
    }
}
