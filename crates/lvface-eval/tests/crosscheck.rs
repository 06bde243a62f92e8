//! The crate against an independent numpy implementation (`tests/reference/gen_crosscheck.py`)
//! on 2503 random pairs and 8000 tied scores, through the fixture it wrote.

use lvface_eval::{tar_at_far, Embeddings, VerificationConfig};
use serde_json::Value;

const FIXTURE: &str = include_str!("fixtures/crosscheck.json");
const EMBEDDINGS: &[u8] = include_bytes!("fixtures/crosscheck_embeddings.f32");

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).expect("fixture should be valid JSON")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn optional_floats(v: &Value) -> Vec<Option<f64>> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(Value::as_f64)
        .collect()
}

fn bits(v: &Value) -> Vec<bool> {
    v.as_str()
        .expect("a 0/1 string")
        .bytes()
        .map(|b| b == b'1')
        .collect()
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!((got - want).abs() <= tol, "{what}: got {got}, numpy {want}");
}

#[test]
fn ten_fold_accuracy_val_and_xnorm_match_numpy() {
    let fx = fixture();
    let pairs = fx["pairs"].as_u64().unwrap() as usize;
    let dim = fx["dim"].as_u64().unwrap() as usize;
    let issame = bits(&fx["issame"]);
    assert_eq!(issame.len(), pairs);

    let values: Vec<f32> = EMBEDDINGS
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(values.len(), 2 * 2 * pairs * dim);
    let (orig, flip) = values.split_at(values.len() / 2);
    let orig = Embeddings::new(orig.to_vec(), dim).unwrap();
    let flip = Embeddings::new(flip.to_vec(), dim).unwrap();

    let v = &fx["verification"];
    let summed = orig.sum(&flip).unwrap();
    let dist = summed.pair_distances().unwrap();
    for (i, want) in floats(&v["distances_head"]).into_iter().enumerate() {
        close(dist[i], want, 1e-12, &format!("distance {i}"));
    }

    let protocol = VerificationConfig::default().init();
    let report = protocol
        .evaluate_embeddings(&orig, Some(&flip), &issame)
        .unwrap();

    assert_eq!(report.pairs, pairs);
    assert_eq!(report.fold_sizes[0], 251);
    assert_eq!(report.fold_sizes[3], 250);
    close(
        report.accuracy,
        v["accuracy"].as_f64().unwrap(),
        1e-6,
        "accuracy",
    );
    close(
        report.accuracy_std,
        v["accuracy_std"].as_f64().unwrap(),
        1e-6,
        "std",
    );
    for (f, (got, want)) in report
        .fold_accuracies
        .iter()
        .zip(floats(&v["fold_accuracies"]))
        .enumerate()
    {
        close(*got, want, 1e-12, &format!("fold {f} accuracy"));
    }
    // Thresholds are grid values: identical, not merely close.
    assert_eq!(report.fold_thresholds, floats(&v["fold_thresholds"]));
    let indices: Vec<u64> = v["fold_threshold_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    for (t, j) in report.fold_thresholds.iter().zip(indices) {
        assert_eq!(*t, protocol.thresholds()[j as usize]);
    }

    close(report.val, v["val"].as_f64().unwrap(), 1e-6, "val");
    close(
        report.val_std,
        v["val_std"].as_f64().unwrap(),
        1e-6,
        "val std",
    );
    close(report.far, v["far"].as_f64().unwrap(), 1e-6, "far");
    for (f, (got, want)) in report
        .fold_val_thresholds
        .iter()
        .zip(floats(&v["fold_val_thresholds"]))
        .enumerate()
    {
        close(*got, want, 1e-12, &format!("fold {f} VAL threshold"));
    }
    let xnorm = report.xnorm.expect("embeddings give XNorm");
    close(xnorm, v["xnorm"].as_f64().unwrap(), 1e-9 * xnorm, "xnorm");
}

#[test]
fn tar_at_far_matches_numpy_roc_and_insightface_lookup() {
    let fx = fixture();
    let t = &fx["tar_far"];
    let denominator = t["denominator"].as_f64().unwrap();
    let scores: Vec<f64> = t["score_numerators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_i64().unwrap() as f64 / denominator)
        .collect();
    let labels = bits(&t["labels"]);
    let fars = floats(&t["fars"]);

    let report = tar_at_far(&scores, &labels, &fars).unwrap();
    assert_eq!(report.impostors as u64, t["impostors"].as_u64().unwrap());
    assert_eq!(report.pairs, scores.len());
    close(report.auc, t["auc"].as_f64().unwrap(), 1e-12, "auc");

    let roc = lvface_eval::RocCurve::new(&scores, &labels).unwrap();
    assert_eq!(
        roc.sklearn_points().len() as u64,
        t["kept_points"].as_u64().unwrap()
    );

    let tar = floats(&t["tar"]);
    let fpr = floats(&t["fpr"]);
    let threshold = optional_floats(&t["threshold"]);
    let below = floats(&t["tar_at_or_below"]);
    let threshold_below = optional_floats(&t["threshold_at_or_below"]);
    for (i, p) in report.points.iter().enumerate() {
        assert_eq!(p.far, fars[i]);
        assert_eq!(p.tar, tar[i], "TAR at FAR {}", p.far);
        assert_eq!(p.fpr, fpr[i], "FPR at FAR {}", p.far);
        assert_eq!(p.threshold, threshold[i], "threshold at FAR {}", p.far);
        assert_eq!(p.tar_at_or_below, below[i], "TAR at or below FAR {}", p.far);
        assert_eq!(p.threshold_at_or_below, threshold_below[i]);
        assert_eq!(p.resolved, p.far * 6000.0 >= 1.0);
    }
}
