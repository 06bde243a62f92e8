//! `lvface-train eval` as a user runs it: a smoke run's latest checkpoint, a weights file of a
//! preset, and embeddings computed elsewhere in an `.npy` file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::backend::{Autodiff, Flex};
use lvface_data::{BinPairs, SyntheticConfig, SyntheticFaces};
use lvface_eval::{machine_line, EvalReport, VerificationConfig};
use lvface_train::{create_run, embed_pairs, train, verification, Experiment, TrainConfig};
use lvface_vit::VitConfig;

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-eval-{name}"));
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

/// stdout of a successful `eval`, one string per line.
fn lines(output: &Output) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// stderr of a failed `eval`, checking that it failed cleanly.
fn failure(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.stdout.is_empty());
    stderr
}

fn p(text: &str) -> &Path {
    Path::new(text)
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn run_mode_repeats_the_verification_of_training() {
    let dir = fresh_dir("run");
    let config = TrainConfig::load(
        &Experiment::File(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml")),
        &[],
    )
    .unwrap();
    create_run(&config, &dir).unwrap();
    let summary = train::<Autodiff<Flex>>(&dir, &Default::default()).unwrap();
    assert!(summary.finished);
    let (name, trained) = &summary.verification[0];
    assert_eq!(name, "synthetic");

    // Default sets (the run's own) and folder (RUN_DIR/eval): the checkpoint's backbone gives
    // exactly the figures of the in-memory model at the end of training.
    let output = eval(&[p("--run"), &dir]);
    assert_eq!(lines(&output), [machine_line("synthetic", trained)]);
    let report = EvalReport::read_json(&dir.join("eval/report.json")).unwrap();
    assert!(
        report.source.ends_with("checkpoint step-00000024"),
        "{}",
        report.source
    );
    assert_eq!(report.sets.len(), 1);
    assert_eq!(report.sets[0].verification.as_ref(), Some(trained));
    let tar = report.sets[0].tar_far.as_ref().unwrap();
    assert_eq!((tar.genuine, tar.impostors), (20, 20));
    let md = std::fs::read_to_string(dir.join("eval/report.md")).unwrap();
    assert!(md.contains("| synthetic | 40 |"), "{md}");
    assert!(is_png(&dir.join("eval/roc-synthetic.png")));
    let svg = std::fs::read_to_string(dir.join("eval/roc-synthetic.svg")).unwrap();
    assert!(svg.contains("synthetic (AUC "));

    // An explicit set and report folder; the set is named after its file.
    let bin = dir.join("data/synthetic_pairs.bin");
    let out = fresh_dir("run-out");
    let output = eval(&[p("--run"), &dir, p("--bin"), &bin, p("--out"), &out]);
    assert_eq!(lines(&output), [machine_line("synthetic_pairs", trained)]);
    assert!(is_png(&out.join("roc-synthetic_pairs.png")));

    // The smoke backbone is not a vit_t: every mismatch is reported, nothing panics.
    let weights = dir.join("checkpoints/step-00000024/backbone.safetensors");
    let stderr = failure(&eval(&[
        p("--weights"),
        &weights,
        p("--model"),
        p("vit_t"),
        p("--bin"),
        &bin,
        p("--out"),
        &out,
    ]));
    assert!(stderr.contains("loading the backbone of"), "{stderr}");
    let stderr = failure(&eval(&[p("--run"), &bin]));
    assert!(stderr.contains("is not a run folder"), "{stderr}");
}

#[test]
fn weights_mode_embeds_with_the_preset() {
    let dir = fresh_dir("weights");
    std::fs::create_dir_all(&dir).unwrap();
    let device = Default::default();
    let vit = VitConfig::preset("vit_t").unwrap();
    let weights = dir.join("vit_t.safetensors");
    let backbone = vit.init::<Flex>(&device);
    backbone.save_weights(&weights).unwrap();
    let faces = SyntheticFaces::new(SyntheticConfig {
        identities: 1,
        images_per_identity: 1,
        held_out_identities: 4,
        pairs: 20,
        size: 112,
        ..Default::default()
    })
    .unwrap();
    let bin = dir.join("tiny.bin");
    faces.write_bin(&bin).unwrap();

    let out = dir.join("report");
    let output = eval(&[
        p("--weights"),
        &weights,
        p("--model"),
        p("vit_t"),
        p("--bin"),
        &bin,
        p("--out"),
        &out,
    ]);

    // The saved model embeds the same in this process, 64 images at a time, flip-summed.
    let pairs = BinPairs::read(&bin).unwrap();
    let embeddings = embed_pairs(&backbone, &pairs, 112, 64, &device).unwrap();
    let expected =
        verification(&embeddings, &pairs.issame, &VerificationConfig::default()).unwrap();
    assert_eq!(embeddings.embeddings.dim(), 512);
    assert_eq!(lines(&output), [machine_line("tiny", &expected)]);
    let report = EvalReport::read_json(&out.join("report.json")).unwrap();
    assert_eq!(report.sets[0].verification.as_ref(), Some(&expected));
    assert!(report.source.contains("(vit_t)"), "{}", report.source);
}

/// An `.npy` file of `rows x cols` values as numpy writes it (format 1.0).
fn npy(descr: &str, fortran: bool, rows: usize, cols: usize, data: Vec<u8>) -> Vec<u8> {
    let fortran = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.into_bytes());
    bytes.extend(data);
    bytes
}

/// 20 pairs, genuine and impostor alternating: genuine pairs point one way (squared distance
/// 0), impostors are orthogonal (2), but genuine pair 0 points in opposite directions (4).
/// Every fold's first best threshold is 0.01; it misclassifies pair 0 only, so fold 0 scores
/// 1/2 and the others 1: accuracy 0.95, population std 0.15. VAL at FAR 1e-3 is 0 in fold 0
/// and 1 elsewhere: 0.9. Norms: 2 and 1 in every pair, so XNorm 1.5.
fn known_rows() -> Vec<[f32; 2]> {
    (0..20)
        .flat_map(|i| match i {
            0 => [[2.0, 0.0], [-1.0, 0.0]],
            i if i % 2 == 0 => [[0.0, 2.0], [0.0, 1.0]],
            _ => [[1.0, 0.0], [0.0, 2.0]],
        })
        .collect()
}

#[test]
fn embeddings_mode_gives_the_known_answer() {
    let dir = fresh_dir("embeddings");
    std::fs::create_dir_all(&dir).unwrap();
    // Only the labels of the set are read: its images need not even decode.
    let bin = dir.join("tiny.bin");
    BinPairs {
        images: vec![b"not an image".to_vec(); 40],
        issame: (0..20).map(|i| i % 2 == 0).collect(),
    }
    .write(&bin)
    .unwrap();

    let rows = known_rows();
    let f4: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let plain = dir.join("plain.npy");
    std::fs::write(&plain, npy("<f4", false, 40, 2, f4.clone())).unwrap();
    let out = dir.join("report");
    let output = eval(&[
        p("--embeddings"),
        &plain,
        p("--pairs"),
        &bin,
        p("--out"),
        &out,
    ]);
    assert_eq!(
        lines(&output),
        [
            "set=tiny accuracy=0.9500 std=0.1500 val@far1e-3=0.9000 threshold=0.010 pairs=20 \
          xnorm=1.500"
        ]
    );
    let report = EvalReport::read_json(&out.join("report.json")).unwrap();
    assert_eq!(report.source, plain.display().to_string());
    assert_eq!(report.sets[0].name, "tiny");
    assert!(is_png(&out.join("roc-tiny.png")));

    // float64, originals then flips that only add up to the rows above: the flip-sum gives the
    // same figures; XNorm is the mean norm over originals and flips.
    let halves: Vec<[f64; 2]> = [1.0, -1.0]
        .iter()
        .flat_map(|sign| {
            rows.iter().map(move |r| {
                [
                    f64::from(r[0]) / 2.0 + sign * 3.0,
                    f64::from(r[1]) / 2.0 - sign * 4.0,
                ]
            })
        })
        .collect();
    let xnorm = halves.iter().map(|r| r[0].hypot(r[1])).sum::<f64>() / 80.0;
    let f8: Vec<u8> = halves
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let flipped = dir.join("flipped.npy");
    std::fs::write(&flipped, npy("<f8", false, 80, 2, f8)).unwrap();
    let output = eval(&[
        p("--embeddings"),
        &flipped,
        p("--pairs"),
        &bin,
        p("--flipped"),
        p("--out"),
        &out,
    ]);
    assert_eq!(
        lines(&output),
        [format!(
            "set=tiny accuracy=0.9500 std=0.1500 val@far1e-3=0.9000 threshold=0.010 pairs=20 \
             xnorm={xnorm:.3}"
        )]
    );

    // Shapes that do not fit the set, and arrays the reader refuses.
    let stderr = failure(&eval(&[
        p("--embeddings"),
        &plain,
        p("--pairs"),
        &bin,
        p("--flipped"),
    ]));
    assert!(stderr.contains("originals then flipped"), "{stderr}");
    assert!(stderr.contains("expected 80, got 40"), "{stderr}");
    let stderr = failure(&eval(&[p("--embeddings"), &flipped, p("--pairs"), &bin]));
    assert!(stderr.contains("expected 40, got 80"), "{stderr}");
    let fortran = dir.join("fortran.npy");
    std::fs::write(&fortran, npy("<f4", true, 40, 2, f4.clone())).unwrap();
    let stderr = failure(&eval(&[p("--embeddings"), &fortran, p("--pairs"), &bin]));
    assert!(stderr.contains("Fortran order"), "{stderr}");
    let ints = dir.join("ints.npy");
    std::fs::write(&ints, npy("<i4", false, 40, 2, f4)).unwrap();
    let stderr = failure(&eval(&[p("--embeddings"), &ints, p("--pairs"), &bin]));
    assert!(
        stderr.contains("dtype \"<i4\" is not supported"),
        "{stderr}"
    );
}
