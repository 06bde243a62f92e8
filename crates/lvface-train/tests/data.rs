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
    Command::new(env!("CARGO_BIN_EXE_lvface-train"))
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
        "images=12 identities=3 size=48x48 other_sizes=0"
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
