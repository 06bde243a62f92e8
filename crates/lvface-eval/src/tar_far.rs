//! TAR@FAR from pair scores, as insightface's IJB scripts (`eval_ijbc.py`) report it.
//!
//! insightface computes `fpr, tpr, _ = roc_curve(label, score)` (sklearn, with
//! `drop_intermediate=True`), flips both arrays, and for each target FAR `x` takes the TPR at
//! `min(zip(abs(fpr - x), range(len(fpr))))`: the operating point whose FPR is **nearest** to
//! `x`, above or below it; among equally near points, the last one of the unflipped curve, which
//! has the largest TPR. [`TarAtFar::tar`] is exactly that.
//!
//! Because the nearest point may lie above the target, and because which points sklearn keeps
//! changes which one is nearest, the report also gives [`TarAtFar::tar_at_or_below`]: the largest
//! TPR of any threshold whose FPR does not exceed the target, on the full curve. With `n`
//! impostor pairs the smallest non-zero FPR is `1 / n`; a target below it is not resolved by the
//! data ([`TarAtFar::resolved`] is false) and its figures are those of FPR 0 or of `1 / n`.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::roc::RocCurve;

/// The FARs of the IJB-B/C tables: 1e-6 … 1e-1.
pub const IJB_FARS: [f64; 6] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1];

/// TAR at one target FAR.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TarAtFar {
    /// The target false-accept rate.
    pub far: f64,
    /// insightface's figure: the TPR at the sklearn ROC point nearest to `far`.
    pub tar: f64,
    /// The FPR of that point.
    pub fpr: f64,
    /// The score threshold of that point (accept when `score >= threshold`); `None` for the
    /// origin, which accepts nothing.
    pub threshold: Option<f64>,
    /// The largest TPR with FPR `<= far`, over every distinct-score threshold.
    pub tar_at_or_below: f64,
    /// The threshold of `tar_at_or_below`; `None` when only the origin qualifies.
    pub threshold_at_or_below: Option<f64>,
    /// Whether `far * impostors >= 1`, i.e. the data can show a false accept at this rate.
    pub resolved: bool,
}

/// TAR at several FARs, with the counts that bound their meaning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TarFarReport {
    /// Number of pairs.
    pub pairs: usize,
    /// Genuine pairs.
    pub genuine: usize,
    /// Impostor pairs: the FAR resolution is `1 / impostors`.
    pub impostors: usize,
    /// `1 / impostors`, the smallest non-zero FAR the data can show.
    pub min_far: f64,
    /// Area under the ROC.
    pub auc: f64,
    /// One entry per target FAR, in the order asked.
    pub points: Vec<TarAtFar>,
}

impl TarFarReport {
    /// The entry for target `far`, if it was asked for.
    pub fn at(&self, far: f64) -> Option<&TarAtFar> {
        self.points.iter().find(|p| p.far == far)
    }
}

impl RocCurve {
    /// TAR at each of `fars`; see the module documentation for the two conventions reported.
    pub fn tar_at_far(&self, fars: &[f64]) -> TarFarReport {
        let kept = self.sklearn_points();
        let finite = |t: f64| t.is_finite().then_some(t);
        let points = fars
            .iter()
            .map(|&far| {
                // Nearest kept point; on a tie the later one (the flipped array's first).
                let mut nearest = kept[0];
                let mut best = f64::INFINITY;
                for &i in &kept {
                    let gap = (self.fpr[i] - far).abs();
                    if gap <= best {
                        best = gap;
                        nearest = i;
                    }
                }
                let below = self.fpr.partition_point(|&f| f <= far) - 1;
                TarAtFar {
                    far,
                    tar: self.tpr[nearest],
                    fpr: self.fpr[nearest],
                    threshold: finite(self.thresholds[nearest]),
                    tar_at_or_below: self.tpr[below],
                    threshold_at_or_below: finite(self.thresholds[below]),
                    resolved: far * self.impostors as f64 >= 1.0,
                }
            })
            .collect();
        TarFarReport {
            pairs: self.genuine + self.impostors,
            genuine: self.genuine,
            impostors: self.impostors,
            min_far: 1.0 / self.impostors as f64,
            auc: self.auc(),
            points,
        }
    }
}

/// TAR at each of `fars` for `scores` (larger = more alike) and `labels` (`true` = genuine).
pub fn tar_at_far(scores: &[f64], labels: &[bool], fars: &[f64]) -> Result<TarFarReport> {
    Ok(RocCurve::new(scores, labels)?.tar_at_far(fars))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_kept_point_and_the_conservative_figure() {
        // 1 genuine above 10 impostors, then 1 genuine below them.
        let mut scores = vec![1.0];
        let mut labels = vec![true];
        for k in 0..10 {
            scores.push(0.9 - 0.01 * k as f64);
            labels.push(false);
        }
        scores.push(0.1);
        labels.push(true);
        let roc = RocCurve::new(&scores, &labels).unwrap();
        // Without the origin the counts are fps 0,1,…,10,10 and tps 1,…,1,2: the horizontal run
        // fps 1..9 is straight, so sklearn keeps (0, 0), (0, .5), (1, .5), (1, 1).
        assert_eq!(roc.sklearn_points(), vec![0, 1, 11, 12]);
        let r = roc.tar_at_far(&[0.05, 0.4, 0.5, 0.6]);
        assert_eq!((r.impostors, r.genuine, r.pairs), (10, 2, 12));
        assert_eq!(r.min_far, 0.1);

        // 0.05: FPR 0 is nearest; of the two points there the later has TPR 0.5.
        let p = r.at(0.05).unwrap();
        assert_eq!((p.fpr, p.tar, p.threshold), (0.0, 0.5, Some(1.0)));
        assert_eq!(
            (p.tar_at_or_below, p.threshold_at_or_below),
            (0.5, Some(1.0))
        );
        assert!(!p.resolved);
        // 0.4: still FPR 0 (gap 0.4 against 0.6).
        assert_eq!(r.at(0.4).unwrap().tar, 0.5);
        // 0.5: FPR 0 and FPR 1 are equally near; the later point (TPR 1) wins, as in insightface.
        let p = r.at(0.5).unwrap();
        assert_eq!((p.fpr, p.tar, p.threshold), (1.0, 1.0, Some(0.1)));
        // The full curve reaches FPR 0.5 at the fifth impostor's score with TPR 0.5.
        assert_eq!(p.tar_at_or_below, 0.5);
        assert_eq!(p.threshold_at_or_below, Some(0.9 - 0.01 * 4.0));
        assert!(p.resolved);
        // 0.6: FPR 1 is nearer.
        assert_eq!(r.at(0.6).unwrap().tar, 1.0);
        // Area: TPR 0.5 over FPR 0..1, then the vertical step adds nothing.
        assert!((r.auc - 0.5).abs() < 1e-15);
    }
}
