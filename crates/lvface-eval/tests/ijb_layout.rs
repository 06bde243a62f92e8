//! A tiny IJB-style layout written to a temporary folder and evaluated end to end.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use lvface_eval::{evaluate_ijb, EvalError, IjbConfig, IjbMeta, ImageBatch, ARCFACE_TEMPLATE};

fn temp_root(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lvface-eval-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("IJBC/meta")).unwrap();
    std::fs::create_dir_all(dir.join("IJBC/loose_crop")).unwrap();
    dir
}

/// (file, template, media, colour, scale, faceness)
type Face = (&'static str, u64, u64, [u8; 3], u32, f32);

/// Person A: templates 1, 2; person B: templates 3, 4. Scale 2 images are 224×224 with
/// landmarks at twice the template, so the alignment has to shrink them.
const FACES: [Face; 5] = [
    ("a1.png", 1, 100, [200, 40, 40], 1, 0.9),
    ("a2.png", 1, 101, [200, 40, 40], 2, 0.8),
    ("a3.png", 2, 102, [190, 60, 40], 1, 0.7),
    ("b1.png", 3, 103, [40, 40, 200], 2, 0.95),
    ("b2.png", 4, 104, [60, 40, 190], 1, 0.6),
];
const PAIRS: &str = "1 2 1\n3 4 1\n1 3 0\n2 4 0\n1 4 0\n";

fn write_layout(root: &Path) {
    let mut tid = String::new();
    let mut pts = String::new();
    for (file, template, media, colour, scale, faceness) in FACES {
        let side = 112 * scale;
        RgbImage::from_pixel(side, side, Rgb(colour))
            .save(root.join("IJBC/loose_crop").join(file))
            .unwrap();
        tid.push_str(&format!("{file} {template} {media}\n"));
        pts.push_str(file);
        for p in ARCFACE_TEMPLATE {
            pts.push_str(&format!(" {} {}", p[0] * scale as f32, p[1] * scale as f32));
        }
        pts.push_str(&format!(" {faceness}\n"));
    }
    std::fs::write(root.join("IJBC/meta/ijbc_face_tid_mid.txt"), tid).unwrap();
    std::fs::write(root.join("IJBC/meta/ijbc_name_5pts_score.txt"), pts).unwrap();
    std::fs::write(root.join("IJBC/meta/ijbc_template_pair_label.txt"), PAIRS).unwrap();
}

/// The model: the mean of each channel of the normalised image (summed in f64, so that it is
/// exact enough for the hand-computed scores).
fn mean_colour(batch: &ImageBatch<'_>) -> Result<Vec<f32>, String> {
    let plane = batch.height * batch.width;
    Ok(batch
        .data
        .chunks_exact(plane)
        .map(|c| (c.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64) as f32)
        .collect())
}

fn unit(c: [u8; 3]) -> [f64; 3] {
    let v = c.map(|x| (f64::from(x) / 255.0 - 0.5) / 0.5);
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.map(|x| x / n)
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn uniform_faces_score_by_colour() {
    let root = temp_root("layout");
    write_layout(&root);
    let meta = IjbMeta::read(&root, "IJBC").unwrap();
    assert_eq!(meta.faces.len(), 5);
    assert_eq!(
        meta.faces[1].landmarks[0],
        [2.0 * ARCFACE_TEMPLATE[0][0], 2.0 * ARCFACE_TEMPLATE[0][1]]
    );
    assert_eq!(meta.faces[4].faceness, 0.6);
    assert_eq!(meta.pairs.len(), 5);

    let result = evaluate_ijb(&root, "IJBC", &IjbConfig::default(), 2, mean_colour).unwrap();
    // Every face is one uniform colour, so each template's direction is its images' colour
    // vector whatever the flips, norms and faceness weights: template 1 is A's colour.
    let (a, a3, b, b2) = (
        unit(FACES[0].3),
        unit(FACES[2].3),
        unit(FACES[3].3),
        unit(FACES[4].3),
    );
    let expected = [dot(a, a3), dot(b, b2), dot(a, b), dot(a3, b2), dot(a, b2)];
    for (got, want) in result.scores.iter().zip(expected) {
        assert!(
            (got - want).abs() < 1e-6,
            "{:?} vs {expected:?}",
            result.scores
        );
    }
    let r = &result.report;
    assert_eq!((r.genuine, r.impostors), (2, 3));
    // Both genuine scores are above every impostor score: TAR 1 from FAR 0 on.
    assert!(expected[0].min(expected[1]) > expected[2].max(expected[3]).max(expected[4]));
    assert!(r.points.iter().all(|p| p.tar_at_or_below == 1.0));
    assert_eq!(r.auc, 1.0);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn broken_meta_lines_are_named() {
    let root = temp_root("broken");
    write_layout(&root);
    std::fs::write(
        root.join("IJBC/meta/ijbc_template_pair_label.txt"),
        "1 2 1\n3 x 0\n",
    )
    .unwrap();
    let err = IjbMeta::read(&root, "IJBC").unwrap_err();
    assert!(
        matches!(err, EvalError::Read { line: Some(2), .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("ijbc_template_pair_label.txt line 2"),
        "{err}"
    );
    std::fs::write(
        root.join("IJBC/meta/ijbc_name_5pts_score.txt"),
        "a1.png 1 2 3\n",
    )
    .unwrap();
    let err = IjbMeta::read(&root, "IJBC").unwrap_err();
    assert!(matches!(err, EvalError::ShapeMismatch { .. }), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}
