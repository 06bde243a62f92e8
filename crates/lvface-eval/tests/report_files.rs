//! A full report written to disk: JSON read back, Markdown, lines, and ROC plots.

use lvface_eval::{
    machine_line, tar_at_far, EvalReport, RocCurve, RocPlot, RocSeries, SetReport,
    VerificationConfig, IJB_FARS,
};

#[test]
fn json_markdown_lines_and_plots() {
    let dir = std::env::temp_dir().join(format!("lvface-eval-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // 40 pairs: genuine at distance 0.4, impostors at 1.6 - 0.01 k: every fold's first best
    // threshold (0.41) separates them.
    let dist: Vec<f64> = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                0.4
            } else {
                1.6 - 0.01 * i as f64
            }
        })
        .collect();
    let same: Vec<bool> = (0..40).map(|i| i % 2 == 0).collect();
    let verification = VerificationConfig::default()
        .init()
        .evaluate_distances(&dist, &same)
        .unwrap();
    assert_eq!(verification.accuracy, 1.0);
    let cosines: Vec<f64> = dist.iter().map(|d| 1.0 - d / 2.0).collect();
    let tar = tar_at_far(&cosines, &same, &IJB_FARS).unwrap();
    let report = EvalReport {
        source: "synthetic".into(),
        sets: vec![SetReport {
            name: "toy".into(),
            verification: Some(verification.clone()),
            tar_far: Some(tar.clone()),
        }],
    };

    let json = dir.join("eval.json");
    report.write_json(&json).unwrap();
    assert_eq!(EvalReport::read_json(&json).unwrap(), report);
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(value["sets"][0]["verification"]["pairs"], 40);
    assert_eq!(value["sets"][0]["tar_far"]["impostors"], 20);

    let md = dir.join("eval.md");
    report.write_markdown(&md).unwrap();
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("| toy | 40 | 100.00 ± 0.00 |"), "{text}");
    assert!(text.contains("TAR@FAR=1e-6 (%)"));

    let lines = report.lines();
    assert_eq!(lines[0], machine_line("toy", &verification));
    assert!(lines[0].starts_with("set=toy accuracy=1.0000 std=0.0000 val@far1e-3="));
    assert!(lines[1].contains("impostors=20"));

    let roc = RocCurve::new(&cosines, &same).unwrap();
    let series = [RocSeries {
        label: "toy",
        roc: &roc,
    }];
    let plot = RocPlot::new("toy");
    plot.write_png(&dir.join("roc.png"), &series).unwrap();
    plot.write_svg(&dir.join("roc.svg"), &series).unwrap();
    let png = image::open(dir.join("roc.png")).unwrap();
    assert_eq!((png.width(), png.height()), (800, 600));
    let svg = std::fs::read_to_string(dir.join("roc.svg")).unwrap();
    assert!(svg.contains("toy (AUC 1.0000)"));

    let err = report
        .write_json(&dir.join("missing/eval.json"))
        .unwrap_err();
    assert!(err.to_string().starts_with("cannot write "), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
