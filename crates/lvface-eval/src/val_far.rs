//! VAL@FAR: the verification rate at the threshold whose false-accept rate on the training folds
//! is the target, as insightface's `calculate_val` (`eval/verification.py`).
//!
//! insightface finds that threshold with `scipy.interpolate.interp1d(far_train, thresholds,
//! kind='slinear')`. `far_train` is a non-decreasing step function of the threshold and repeats
//! values (it is 0 for every threshold below the smallest impostor distance), and current scipy
//! refuses repeated `x` ("Expect x to not have duplicates", insightface issues #2152, #2438).
//! [`interpolate_threshold`] is the interpolation a linear B-spline on those repeated knots
//! evaluates, which equals plain linear interpolation wherever the FAR values are distinct:
//! with `i` the **last** index where `far[i] <= target`, it returns `thresholds[i]` if
//! `far[i] == target`, and otherwise the point on the segment from `(far[i], thresholds[i])` to
//! `(far[i + 1], thresholds[i + 1])`.

/// The threshold at which the non-decreasing `far` curve reaches `target`, interpolating
/// linearly between grid points as described in the module documentation.
///
/// Returns `0.0` (accept nothing) when `far` never reaches `target`, as insightface does.
///
/// # Panics
/// If `far` and `thresholds` differ in length or are empty.
pub fn interpolate_threshold(far: &[f64], thresholds: &[f64], target: f64) -> f64 {
    assert_eq!(far.len(), thresholds.len(), "one FAR per threshold");
    assert!(!far.is_empty(), "the threshold grid should not be empty");
    let max = far.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max < target {
        return 0.0;
    }
    let below = far.partition_point(|&f| f <= target);
    if below == 0 {
        // `far[0] > target`: scipy would raise a bounds error; the curve starts above the target,
        // so the smallest threshold is the closest one can get.
        return thresholds[0];
    }
    let i = below - 1;
    if far[i] == target || i + 1 == far.len() {
        return thresholds[i];
    }
    let (x0, x1) = (far[i], far[i + 1]);
    let (y0, y1) = (thresholds[i], thresholds[i + 1]);
    y0 * ((x1 - target) / (x1 - x0)) + y1 * ((target - x0) / (x1 - x0))
}

/// Genuine and impostor acceptance at `threshold` (accept when `dist < threshold`) over the
/// pairs `range`: `(true_accepts, false_accepts)`.
pub(crate) fn accepts(
    dist: &[f64],
    issame: &[bool],
    range: std::ops::Range<usize>,
    threshold: f64,
) -> (usize, usize) {
    let mut ta = 0;
    let mut fa = 0;
    for i in range {
        if dist[i] < threshold {
            if issame[i] {
                ta += 1;
            } else {
                fa += 1;
            }
        }
    }
    (ta, fa)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_values_interpolate_linearly() {
        let far = [0.0, 0.1, 0.3, 0.6];
        let t = [0.0, 1.0, 2.0, 3.0];
        assert_eq!(interpolate_threshold(&far, &t, 0.1), 1.0);
        assert!((interpolate_threshold(&far, &t, 0.2) - 1.5).abs() < 1e-12);
        assert!((interpolate_threshold(&far, &t, 0.45) - 2.5).abs() < 1e-12);
        assert_eq!(interpolate_threshold(&far, &t, 0.6), 3.0);
    }

    #[test]
    fn ties_use_the_last_grid_point_of_the_lower_run() {
        // FAR is 0 up to threshold 2 and 0.5 from threshold 3 on.
        let far = [0.0, 0.0, 0.0, 0.5, 0.5, 1.0];
        let t = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        // Target 0.25 lies between the last 0 (threshold 2) and the first 0.5 (threshold 3).
        assert!((interpolate_threshold(&far, &t, 0.25) - 2.5).abs() < 1e-12);
        // An exact hit on a run returns the run's last threshold.
        assert_eq!(interpolate_threshold(&far, &t, 0.5), 4.0);
        assert_eq!(interpolate_threshold(&far, &t, 0.0), 2.0);
        // Between 0.5 (last at 4) and 1.0 (at 5).
        assert!((interpolate_threshold(&far, &t, 0.75) - 4.5).abs() < 1e-12);
    }

    #[test]
    fn unreachable_target_accepts_nothing() {
        let far = [0.0, 0.0, 0.001];
        let t = [0.0, 0.5, 1.0];
        assert_eq!(interpolate_threshold(&far, &t, 0.01), 0.0);
    }

    #[test]
    fn accepts_counts_strictly_below() {
        let dist = [0.5, 1.0, 1.5, 1.0];
        let same = [true, true, false, false];
        assert_eq!(accepts(&dist, &same, 0..4, 1.0), (1, 0));
        assert_eq!(accepts(&dist, &same, 0..4, 1.0000001), (2, 1));
        assert_eq!(accepts(&dist, &same, 2..4, 2.0), (0, 2));
    }
}
