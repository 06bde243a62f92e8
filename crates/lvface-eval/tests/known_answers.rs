//! Small synthetic sets whose figures are worked out by hand in the comments.

use lvface_eval::{tar_at_far, Embeddings, EvalError, RocCurve, VerificationConfig};

/// 20 pairs, two per fold: a genuine pair then an impostor pair. Genuine distances are 0.5
/// except fold 3's, 1.7 (a miss); impostor distances are 1.4995, between the VAL grid points
/// 1.499 and 1.500.
fn twenty_pairs() -> (Vec<f64>, Vec<bool>) {
    let mut dist = vec![];
    let mut same = vec![];
    for fold in 0..10 {
        dist.push(if fold == 3 { 1.7 } else { 0.5 });
        same.push(true);
        dist.push(1.4995);
        same.push(false);
    }
    (dist, same)
}

#[test]
fn accuracy_thresholds_and_std_by_hand() {
    let (dist, same) = twenty_pairs();
    let r = VerificationConfig::default()
        .init()
        .evaluate_distances(&dist, &same)
        .unwrap();
    // Training folds (18 pairs) of a fold other than 3: 8 genuine at 0.5, one at 1.7, 9
    // impostors at 1.4995. Correct predictions: t <= 0.5 -> 9; 0.5 < t <= 1.4995 -> 17;
    // 1.4995 < t <= 1.7 -> 8; t > 1.7 -> 9. The best run starts at the grid point 0.51, and
    // np.argmax takes its first threshold. Fold 3 trains on a clean set with the same run.
    assert_eq!(r.fold_thresholds, vec![51.0 * 0.01; 10]);
    assert!((r.threshold - 0.51).abs() < 1e-12);
    assert!((r.threshold_cosine - (1.0 - 0.51 / 2.0)).abs() < 1e-15);
    // At 0.51 each test fold is right on both pairs, except fold 3 (its genuine 1.7 is missed).
    let mut expected = vec![1.0; 10];
    expected[3] = 0.5;
    assert_eq!(r.fold_accuracies, expected);
    // Mean 0.95; population std sqrt((9 * 0.05^2 + 0.45^2) / 10) = 0.15.
    assert!((r.accuracy - 0.95).abs() < 1e-15);
    assert!((r.accuracy_std - 0.15).abs() < 1e-12);
    assert_eq!((r.pairs, r.genuine, r.impostors), (20, 10, 10));
    assert_eq!(r.fold_sizes, vec![2; 10]);
}

#[test]
fn val_at_far_by_hand() {
    let (dist, same) = twenty_pairs();
    let r = VerificationConfig::default()
        .init()
        .evaluate_distances(&dist, &same)
        .unwrap();
    // Training FAR on the 0.001 grid: 0 up to t = 1.499, 1 from t = 1.500. Target 1e-3 lies
    // between the last 0 (index 1499) and the first 1 (index 1500):
    // t = 1.499 * (1 - 1e-3) + 1.500 * 1e-3.
    let t = 1499.0 * 0.001 * (1.0 - 1e-3) + 1500.0 * 0.001 * 1e-3;
    for got in &r.fold_val_thresholds {
        assert!((got - t).abs() < 1e-12, "{got} vs {t}");
    }
    // Genuine 0.5 is accepted, impostor 1.4995 is not; fold 3's genuine 1.7 is not.
    let mut vals = vec![1.0; 10];
    vals[3] = 0.0;
    assert_eq!(r.fold_vals, vals);
    assert_eq!(r.fold_fars, vec![0.0; 10]);
    assert!((r.val - 0.9).abs() < 1e-15);
    assert!((r.val_std - 0.3).abs() < 1e-12);
    assert_eq!(r.far, 0.0);
}

#[test]
fn unreachable_far_gives_threshold_zero() {
    // All impostors are beyond every grid threshold, so the training FAR never reaches 1e-3:
    // insightface then uses threshold 0, which accepts nothing.
    let mut dist = vec![];
    let mut same = vec![];
    for _ in 0..10 {
        dist.extend([0.3, 4.0]);
        same.extend([true, false]);
    }
    let r = VerificationConfig::default()
        .init()
        .evaluate_distances(&dist, &same)
        .unwrap();
    assert_eq!(r.fold_val_thresholds, vec![0.0; 10]);
    assert_eq!((r.val, r.far), (0.0, 0.0));
    assert_eq!(r.accuracy, 1.0);
    assert_eq!(r.accuracy_std, 0.0);
    // Accuracy is perfect from the first grid point above 0.3.
    assert_eq!(r.fold_thresholds, vec![31.0 * 0.01; 10]);
}

#[test]
fn degenerate_sets_are_clear_errors() {
    let v = VerificationConfig::default().init();
    let err = v.evaluate_distances(&[0.5; 9], &[true; 9]).unwrap_err();
    assert!(
        matches!(
            err,
            EvalError::TooFewPairs {
                pairs: 9,
                folds: 10
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "9 pairs cannot be split into 10 folds (at least 10 needed)"
    );

    let err = v.evaluate_distances(&[0.5; 40], &[true; 40]).unwrap_err();
    assert!(
        matches!(
            err,
            EvalError::DegenerateFold {
                fold: 0,
                start: 0,
                end: 4,
                same: 4,
                diff: 0
            }
        ),
        "{err}"
    );
    // Only fold 6 (pairs 24..28) is all impostors.
    let mut same: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
    same[24..28].fill(false);
    let err = v.evaluate_distances(&[1.0; 40], &same).unwrap_err();
    assert!(
        matches!(
            err,
            EvalError::DegenerateFold {
                fold: 6,
                same: 0,
                diff: 4,
                ..
            }
        ),
        "{err}"
    );

    let err = v.evaluate_distances(&[1.0; 20], &[true; 19]).unwrap_err();
    assert!(matches!(err, EvalError::ShapeMismatch { .. }), "{err}");
    let mut dist = vec![1.0; 20];
    dist[7] = f64::NAN;
    let same: Vec<bool> = (0..20).map(|i| i % 2 == 0).collect();
    let err = v.evaluate_distances(&dist, &same).unwrap_err();
    assert!(
        matches!(err, EvalError::NotFinite { index: 7, .. }),
        "{err}"
    );
}

#[test]
fn embeddings_path_flip_sums_and_reports_xnorm() {
    // 20 pairs in 2-d. Genuine pairs: both rows along (1, 0); impostors: (1, 0) against (0, 1).
    // Flipped copies are the same vectors scaled by 3, so the flip-sum has the same directions.
    let mut orig = vec![];
    let mut same = vec![];
    for i in 0..20 {
        let genuine = i % 2 == 0;
        orig.extend([2.0f32, 0.0]);
        orig.extend(if genuine { [1.0f32, 0.0] } else { [0.0, 1.0] });
        same.push(genuine);
    }
    let flip: Vec<f32> = orig.iter().map(|v| v * 3.0).collect();
    let orig = Embeddings::new(orig, 2).unwrap();
    let flip = Embeddings::new(flip, 2).unwrap();
    let v = VerificationConfig::default().init();
    let r = v.evaluate_embeddings(&orig, Some(&flip), &same).unwrap();
    // Distances are 0 (genuine) and 2 (impostor): perfect from the grid point 0.01.
    assert_eq!(r.accuracy, 1.0);
    assert_eq!(r.fold_thresholds, vec![0.01; 10]);
    // Raw norms: original rows 2 and 1, flipped rows 6 and 3: mean (2 + 1 + 6 + 3) / 4 = 3.
    assert_eq!(r.xnorm, Some(3.0));
    // Without flips, XNorm is the mean of the given rows: (2 + 1) / 2.
    let r = v.evaluate_embeddings(&orig, None, &same).unwrap();
    assert_eq!(r.xnorm, Some(1.5));
    let err = v.evaluate_embeddings(&orig, None, &same[..19]).unwrap_err();
    assert!(
        matches!(
            err,
            EvalError::ShapeMismatch {
                expected: 38,
                got: 40,
                ..
            }
        ),
        "{err}"
    );
}

/// 4 genuine pairs at scores 2.0, 0.9995, 0.5, -1.0 and 1000 impostors at k / 1000 for
/// k = 0..999 (one of them tied with a genuine at 0.5).
fn thousand_impostors() -> (Vec<f64>, Vec<bool>) {
    let mut scores = vec![2.0, 0.9995, 0.5, -1.0];
    let mut labels = vec![true; 4];
    for k in 0..1000 {
        scores.push(k as f64 / 1000.0);
        labels.push(false);
    }
    (scores, labels)
}

#[test]
fn tar_at_far_by_hand() {
    let (scores, labels) = thousand_impostors();
    let roc = RocCurve::new(&scores, &labels).unwrap();
    // Counts (fps, tps) by decreasing score: 2.0 (0,1), 0.9995 (0,2), 0.999 (1,2), …,
    // 0.501 (499,2), 0.5 (500,3), 0.499 (501,3), …, 0.0 (1000,3), -1.0 (1000,4). sklearn keeps
    // the points where the counts bend: (0,1), (0,2), (499,2), (500,3), (1000,3), (1000,4).
    let kept: Vec<(f64, f64)> = roc
        .sklearn_points()
        .iter()
        .map(|&i| (roc.fpr[i], roc.tpr[i]))
        .collect();
    assert_eq!(
        kept,
        vec![
            (0.0, 0.0),
            (0.0, 0.25),
            (0.0, 0.5),
            (0.499, 0.5),
            (0.5, 0.75),
            (1.0, 0.75),
            (1.0, 1.0)
        ]
    );
    let r = roc.tar_at_far(&[1e-6, 1e-3, 1e-1, 0.45]);
    assert_eq!((r.genuine, r.impostors, r.min_far), (4, 1000, 1e-3));
    // AUC: 0.499 * 0.5 + 0.001 * (0.5 + 0.75) / 2 + 0.5 * 0.75.
    assert!((r.auc - 0.625125).abs() < 1e-12);

    // 1e-3: the kept point nearest is at FPR 0 (the point at FPR 0.001 was dropped as
    // collinear); of the three FPR-0 points the last has TPR 0.5, threshold 0.9995. The full
    // curve reaches FPR 0.001 exactly at threshold 0.999, also with TPR 0.5.
    let p = r.at(1e-3).unwrap();
    assert_eq!((p.tar, p.fpr, p.threshold), (0.5, 0.0, Some(0.9995)));
    assert_eq!(
        (p.tar_at_or_below, p.threshold_at_or_below),
        (0.5, Some(0.999))
    );
    assert!(p.resolved);
    // 1e-6 is below 1 / 1000: not resolved, and both figures are those of FPR 0.
    let p = r.at(1e-6).unwrap();
    assert_eq!((p.tar, p.fpr, p.tar_at_or_below), (0.5, 0.0, 0.5));
    assert!(!p.resolved);
    // 0.1: FPR 0 (gap 0.1) is nearer than 0.499; the full curve allows 100 false accepts
    // (threshold 0.9) without another genuine.
    let p = r.at(1e-1).unwrap();
    assert_eq!((p.tar, p.fpr), (0.5, 0.0));
    assert_eq!(
        (p.tar_at_or_below, p.threshold_at_or_below),
        (0.5, Some(0.9))
    );
    // 0.45: FPR 0.499 is nearest.
    let p = r.at(0.45).unwrap();
    assert_eq!((p.tar, p.fpr, p.threshold), (0.5, 0.499, Some(0.501)));
}

#[test]
fn fully_tied_scores_and_one_class_inputs() {
    // Every score equal: one operating point (1, 1) after the origin.
    let r = tar_at_far(
        &[0.3; 6],
        &[true, false, true, false, false, false],
        &[1e-3, 0.6],
    )
    .unwrap();
    let p = r.at(1e-3).unwrap();
    assert_eq!((p.tar, p.fpr, p.threshold), (0.0, 0.0, None));
    assert_eq!((p.tar_at_or_below, p.threshold_at_or_below), (0.0, None));
    let p = r.at(0.6).unwrap();
    assert_eq!((p.tar, p.fpr, p.threshold), (1.0, 1.0, Some(0.3)));
    assert!((r.auc - 0.5).abs() < 1e-15);

    let err = tar_at_far(&[0.1, 0.2], &[false, false], &[1e-3]).unwrap_err();
    assert!(
        matches!(
            err,
            EvalError::OneClass {
                genuine: 0,
                impostors: 2
            }
        ),
        "{err}"
    );
}
