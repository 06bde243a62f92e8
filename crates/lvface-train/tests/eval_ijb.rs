//! `lvface-train eval --ijb` (what `cargo xtask eval --ijb` runs) on a tiny generated IJB-C
//! layout: the weights of a preset at 112 px, and a smoke run whose 32 px model needs the
//! aligned faces resized.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use image::{Rgb, RgbImage};
use lvface_eval::{evaluate_ijb, tar_line, EvalReport, IjbConfig, ImageBatch, ARCFACE_TEMPLATE};
use lvface_train::{create_run, train, Experiment, TrainConfig};
use lvface_vit::{Vit, VitConfig};

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-eval-ijb-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

fn eval(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lvface"))
        .arg("eval")
        .args(args)
        .output()
        .unwrap()
}

fn lines(output: &Output) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect()
}

fn p(text: &str) -> &Path {
    Path::new(text)
}

/// (file, template, media, person, scale, faceness). Persons 0 and 1 have two templates each;
/// scale 2 images are 224x224 with landmarks at twice the template, so alignment shrinks them.
const FACES: [(&str, u64, u64, u8, u32, f32); 6] = [
    ("a1.png", 1, 100, 0, 1, 0.9),
    ("a2.jpg", 1, 101, 0, 2, 0.8),
    ("a3.png", 2, 102, 0, 1, 0.7),
    ("b1.png", 3, 103, 1, 2, 0.95),
    ("b2.jpg", 4, 104, 1, 1, 0.6),
    ("b3.png", 4, 104, 1, 1, 0.5),
];
const PAIRS: &str = "1 2 1\n3 4 1\n1 3 0\n2 4 0\n1 4 0\n2 3 0\n";

/// Writes `root/IJBC/{meta,loose_crop}`: striped faces whose stripes and colours depend on the
/// person, with the landmarks of the ArcFace template (scaled with the image).
fn write_layout(root: &Path) {
    let (meta, crops) = (root.join("IJBC/meta"), root.join("IJBC/loose_crop"));
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::create_dir_all(&crops).unwrap();
    let (mut tid, mut pts) = (String::new(), String::new());
    for (i, (file, template, media, person, scale, faceness)) in FACES.into_iter().enumerate() {
        let side = 112 * scale;
        let image = RgbImage::from_fn(side, side, |x, y| {
            let (x, y) = (x / scale, y / scale);
            // stripe <= 11 and i <= 5: the red channel stays below 256.
            let stripe = if person == 0 { x / 14 } else { y / 10 };
            Rgb([
                (40 + 15 * stripe + 3 * i as u32) as u8,
                if person == 0 { 180 } else { 60 },
                ((x + y) / 2) as u8,
            ])
        });
        image.save(crops.join(file)).unwrap();
        tid.push_str(&format!("{file} {template} {media}\n"));
        pts.push_str(file);
        for q in ARCFACE_TEMPLATE {
            pts.push_str(&format!(" {} {}", q[0] * scale as f32, q[1] * scale as f32));
        }
        pts.push_str(&format!(" {faceness}\n"));
    }
    std::fs::write(meta.join("ijbc_face_tid_mid.txt"), tid).unwrap();
    std::fs::write(meta.join("ijbc_name_5pts_score.txt"), pts).unwrap();
    std::fs::write(meta.join("ijbc_template_pair_label.txt"), PAIRS).unwrap();
}

/// `backbone` on a batch handed over by lvface-eval.
fn embed(backbone: &Vit<Flex>, batch: &ImageBatch<'_>) -> Result<Vec<f32>, String> {
    let shape = [batch.batch, batch.channels, batch.height, batch.width];
    let images = Tensor::<Flex, 4>::from_data(
        TensorData::new(batch.data.to_vec(), shape),
        &Default::default(),
    );
    backbone
        .forward(images)
        .into_data()
        .to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn weights_mode_scores_ijb_templates_like_the_library() {
    let dir = fresh_dir("weights");
    write_layout(&dir.join("ijb"));
    let device = Default::default();
    let backbone = VitConfig::preset("vit_t").unwrap().init::<Flex>(&device);
    let weights = dir.join("vit_t.safetensors");
    backbone.save_weights(&weights).unwrap();

    // The same protocol in this process, with the same backbone and batch (64).
    let expected = evaluate_ijb(&dir.join("ijb"), "IJBC", &IjbConfig::default(), 64, |b| {
        embed(&backbone, b)
    })
    .unwrap()
    .report;
    assert_eq!((expected.genuine, expected.impostors), (2, 4));
    let line = tar_line("IJBC", &expected);
    assert!(line.starts_with("set=IJBC tar@far1e-6="), "{line}");

    // The target folder itself, or the folder holding it.
    let out = dir.join("report");
    for ijb in [dir.join("ijb/IJBC"), dir.join("ijb")] {
        let output = eval(&[
            p("--weights"),
            &weights,
            p("--model"),
            p("vit_t"),
            p("--ijb"),
            &ijb,
            p("--out"),
            &out,
        ]);
        assert_eq!(lines(&output), std::slice::from_ref(&line));
    }
    let report = EvalReport::read_json(&out.join("report.json")).unwrap();
    assert_eq!(report.sets.len(), 1);
    assert_eq!(report.sets[0].name, "IJBC");
    assert!(report.sets[0].verification.is_none());
    assert_eq!(report.sets[0].tar_far.as_ref(), Some(&expected));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| IJBC | 2 | 4 |"), "{md}");
    assert!(std::fs::read(out.join("roc-IJBC.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
    assert!(out.join("roc-IJBC.svg").is_file());

    // A folder that is not an IJB layout, and a face file that is missing, are named.
    let output = eval(&[
        p("--weights"),
        &weights,
        p("--model"),
        p("vit_t"),
        p("--ijb"),
        &dir,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not an IJB folder"), "{stderr}");
    std::fs::remove_file(dir.join("ijb/IJBC/loose_crop/b2.jpg")).unwrap();
    let output = eval(&[
        p("--weights"),
        &weights,
        p("--model"),
        p("vit_t"),
        p("--ijb"),
        &dir.join("ijb"),
        p("--out"),
        &out,
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("b2.jpg"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn run_mode_resizes_aligned_faces_to_the_model() {
    let dir = fresh_dir("run");
    write_layout(&dir.join("ijb"));
    let run = dir.join("run");
    let config = TrainConfig::load(
        &Experiment::File(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml")),
        &[],
    )
    .unwrap();
    assert_eq!(config.vit.image_size, 32);
    create_run(&config, &run).unwrap();
    assert!(
        train::<Autodiff<Flex>>(&run, &Default::default())
            .unwrap()
            .finished
    );

    // --ijb alone: only the IJB target, not the run's own synthetic pairs.
    let output = eval(&[p("--run"), &run, p("--ijb"), &dir.join("ijb")]);
    let lines = lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let report = EvalReport::read_json(&run.join("eval/report.json")).unwrap();
    let tar = report.sets[0].tar_far.as_ref().unwrap();
    assert_eq!(lines[0], tar_line("IJBC", tar));
    assert_eq!((tar.genuine, tar.impostors, tar.pairs), (2, 4, 6));
    assert!(
        lines[0].ends_with("impostors=4 min_far=2.500e-1 pairs=6"),
        "{}",
        lines[0]
    );
}
