//! `lvface-train data` (what `cargo xtask data` runs): synth, pack and inspect as a user runs
//! them, and the errors that name the bad file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lvface_data::{BinPairs, FaceSource, RecordDataset};

fn fresh_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-data-cli-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

fn data(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lvface"))
        .arg("data")
        .args(args)
        .output()
        .unwrap()
}

fn line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_string()
}

fn failure(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "succeeded; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.stdout.is_empty());
    stderr
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn synth_then_pack_then_inspect() {
    let dir = fresh_dir("round");
    let rec = dir.join("rec");
    let flags = [
        "--ids",
        "3",
        "--per-id",
        "4",
        "--held-out",
        "2",
        "--pairs",
        "6",
    ];
    let mut args = vec!["synth", s(&rec), "--size", "48"];
    args.extend(flags);
    assert_eq!(
        line(&data(&args)),
        "images=12 identities=3 size=48x48 pairs=6 same=3"
    );
    let set = RecordDataset::open(&rec).unwrap();
    assert_eq!((set.len(), set.num_classes()), (12, Some(3)));
    assert_eq!(
        set.scan_labels().unwrap(),
        [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    );
    let bin = rec.join("synthetic_pairs.bin");
    let plain = BinPairs::read(&bin).unwrap();
    assert_eq!(plain.len(), 6);
    // The masked set: the same pairs, the first image of each unchanged, the second masked.
    let masked_bin = rec.join("synthetic_masked_pairs.bin");
    let masked = BinPairs::read(&masked_bin).unwrap();
    assert_eq!(masked.issame, plain.issame);
    for (i, (p, m)) in plain.images.iter().zip(&masked.images).enumerate() {
        assert_eq!(p == m, i % 2 == 0, "image {i}");
    }
    assert_eq!(line(&data(&["inspect", s(&masked_bin)])), "pairs=6 same=3");
    assert_eq!(
        line(&data(&["inspect", s(&rec)])),
        "images=12 identities=3 size=48x48"
    );
    assert_eq!(
        line(&data(&["inspect", s(&rec.join("train.rec"))])),
        "images=12 identities=3 size=48x48"
    );
    assert_eq!(line(&data(&["inspect", s(&bin)])), "pairs=6 same=3");

    // The same identities as folders, then packed: the same images, byte for byte.
    let folders = dir.join("folders");
    let mut args = vec!["synth", s(&folders), "--format", "folders", "--size", "48"];
    args.extend(flags);
    line(&data(&args));
    let packed = dir.join("packed");
    assert_eq!(
        line(&data(&["pack", s(&folders.join("images")), s(&packed)])),
        "images=12 identities=3 size=48x48 other_sizes=0 repeated=0"
    );
    let again = RecordDataset::open(&packed).unwrap();
    for i in 0..12 {
        assert_eq!(
            again.encoded(i).unwrap().bytes,
            set.encoded(i).unwrap().bytes
        );
        assert_eq!(again.encoded(i).unwrap().label, i / 4);
    }
    let labels = std::fs::read_to_string(packed.join("labels.tsv")).unwrap();
    assert!(labels.starts_with("0\t0000000\n"), "{labels}");
    assert_eq!(
        line(&data(&["inspect", s(&packed)])),
        "images=12 identities=3 size=48x48"
    );

    // Writing into a folder that holds something is refused.
    let stderr = failure(&data(&["pack", s(&folders.join("images")), s(&packed)]));
    assert!(stderr.contains("is not empty"), "{stderr}");
}

#[test]
fn bad_input_names_the_file() {
    let dir = fresh_dir("bad");
    let faces = dir.join("faces");
    std::fs::create_dir_all(faces.join("alice")).unwrap();
    std::fs::create_dir_all(faces.join("bob")).unwrap();
    let good = lvface_data::encode_png(&image::RgbImage::new(8, 8), "t").unwrap();
    std::fs::write(faces.join("alice/1.png"), &good).unwrap();
    std::fs::write(faces.join("bob/1.jpg"), b"\xff\xd8\xff not really a jpeg").unwrap();
    let stderr = failure(&data(&["pack", s(&faces), s(&dir.join("out"))]));
    assert!(stderr.contains("bob/1.jpg"), "{stderr}");

    std::fs::create_dir_all(faces.join("carol")).unwrap();
    let stderr = failure(&data(&["pack", s(&faces), s(&dir.join("out2"))]));
    assert!(stderr.contains("carol"), "{stderr}");

    let junk = dir.join("junk.bin");
    std::fs::write(&junk, b"\x80\x02cos\nsystem\n").unwrap();
    let stderr = failure(&data(&["inspect", s(&junk)]));
    assert!(stderr.contains("junk.bin"), "{stderr}");
    let rec = dir.join("cut.rec");
    std::fs::write(&rec, b"\x0a\x23\xd7\xce\xff\x00\x00\x00abc").unwrap();
    let stderr = failure(&data(&["inspect", s(&rec)]));
    assert!(stderr.contains("cut.rec"), "{stderr}");
    let stderr = failure(&data(&["inspect", s(&dir.join("missing"))]));
    assert!(stderr.contains("does not exist"), "{stderr}");
    let stderr = failure(&data(&["synth", s(&dir.join("s")), "--ids", "0"]));
    assert!(stderr.contains("--ids"), "{stderr}");
}

/// A set of 2^24 + 1000 images, whose header float32 rounds (16,778,217 is stored as
/// 16,778,216): inspect counts it exactly and a run trains on it. The index points every image
/// of a class at one record, so the set takes 256 MB of index and no gigabytes of images.
#[test]
fn a_set_above_two_to_the_24_images_inspects_and_trains() {
    let dir = fresh_dir("large");
    let rec = dir.join("rec");
    let images = (1u64 << 24) + 1000;
    let face = image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 8) as u8, 90])
    });
    let jpeg = lvface_data::encode_jpeg(&face, 90, "face").unwrap();
    let starts = lvface_data::even_class_starts(images, 1000);
    lvface_data::write_shared_record_set(&rec, &starts, &jpeg, (32, 32)).unwrap();
    assert_ne!((images + 1) as f32 as u64, images + 1);

    let inspected = line(&data(&["inspect", s(&rec)]));
    assert_eq!(
        inspected,
        format!("images={images} identities=1000 size=32x32")
    );

    let out = dir.join("run");
    let smoke = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    let trained = Command::new(env!("CARGO_BIN_EXE_lvface"))
        .args(["train", "--config", s(&smoke), "--out", s(&out)])
        .args(["--set", &format!("data.rec={}", s(&rec))])
        .args([
            "--set",
            "run.stop_at_step=2",
            "--set",
            "eval.every_epochs=0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&trained.stderr);
    assert!(trained.status.success(), "stderr: {stderr}");
    let metrics = std::fs::read_to_string(out.join(lvface_train::METRICS_FILE)).unwrap();
    let steps: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!steps.is_empty(), "no metrics");
    for step in &steps {
        assert!(step["loss"].as_f64().is_some_and(f64::is_finite), "{step}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 200 KB of nested lists used to overflow the stack (SIGABRT) when the value was dropped; now
/// the reader refuses it at the opcode, and the command exits with an error naming the file.
#[test]
fn deeply_nested_bin_is_an_error_not_a_crash() {
    let dir = fresh_dir("nested");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("nested.bin");
    let n = 100_000;
    std::fs::write(
        &bin,
        [&b"\x80\x02"[..], &vec![b']'; n], &vec![b'a'; n - 1], b"."].concat(),
    )
    .unwrap();
    let stderr = failure(&data(&["inspect", s(&bin)]));
    assert!(
        stderr.contains("nested.bin") && stderr.contains("nested more than 32"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
