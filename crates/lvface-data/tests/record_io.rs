//! RecordIO written by this crate read back whole, through the index, through a scan and after
//! damage.

use std::path::{Path, PathBuf};

use lvface_data::record_io::RECORD_MAGIC;
use lvface_data::{
    decode_face, pack_folder, rebuild_index, FaceSource, ImageCodec, ImageFolder, RecordDataset,
    RecordDatasetWriter, SyntheticConfig, SyntheticFaces,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lvface-data-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A random payload, sometimes holding the magic word at aligned and unaligned offsets.
fn payload(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let len = rng.random_range(0..64);
    let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    for _ in 0..rng.random_range(0..3) {
        let at = rng.random_range(0..=bytes.len());
        bytes.splice(at..at, RECORD_MAGIC.to_le_bytes());
    }
    bytes
}

#[test]
fn write_then_read_returns_the_same_images_and_labels() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for case in 0..25 {
        let dir = scratch(&format!("prop-{case}"));
        // Random non-decreasing labels, possibly skipping classes.
        let mut images = Vec::new();
        let mut label = 0usize;
        for _ in 0..rng.random_range(1..30) {
            label += usize::from(rng.random_bool(0.3)) * rng.random_range(1..3);
            images.push((label, payload(&mut rng)));
        }
        let mut writer = RecordDatasetWriter::create(&dir, 112, 112).unwrap();
        for (label, bytes) in &images {
            writer.add_image(*label, bytes).unwrap();
        }
        let classes = label + 1;
        assert_eq!(writer.finish().unwrap(), (images.len(), classes));

        let check = |ds: &RecordDataset| {
            assert_eq!(ds.len(), images.len());
            assert_eq!(ds.num_classes(), Some(classes));
            for (i, (label, bytes)) in images.iter().enumerate() {
                let face = ds.encoded(i).unwrap();
                assert_eq!(
                    (&face.bytes, face.label),
                    (bytes, *label),
                    "case {case} image {i}"
                );
            }
            // Identity ranges cover each class's images, in order.
            let ranges = ds.identity_ranges().unwrap();
            for (class, range) in ranges.iter().enumerate() {
                let expected = images.iter().filter(|(l, _)| *l == class).count() as u64;
                assert_eq!(range.end - range.start, expected);
            }
        };
        check(&RecordDataset::open(&dir).unwrap());

        // Without the index, the reader scans; the rebuilt index equals the written one.
        let idx = dir.join("train.idx");
        let written = std::fs::read_to_string(&idx).unwrap();
        std::fs::remove_file(&idx).unwrap();
        check(&RecordDataset::open(&dir).unwrap());
        let records = images.len() + classes + 1;
        assert_eq!(
            rebuild_index(&dir.join("train.rec"), &idx).unwrap(),
            records
        );
        assert_eq!(std::fs::read_to_string(&idx).unwrap(), written);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn synthetic(dir: &Path) -> SyntheticFaces {
    let faces = SyntheticFaces::new(SyntheticConfig {
        identities: 3,
        images_per_identity: 2,
        held_out_identities: 2,
        pairs: 4,
        ..Default::default()
    })
    .unwrap();
    faces.write_rec(dir).unwrap();
    faces
}

#[test]
fn truncated_rec_and_bad_index_name_file_and_offset() {
    let dir = scratch("damage");
    synthetic(&dir);
    let rec = dir.join("train.rec");
    let idx = dir.join("train.idx");
    let bytes = std::fs::read(&rec).unwrap();
    let index = std::fs::read_to_string(&idx).unwrap();
    let offset_of = |key: &str| -> u64 {
        let line = index
            .lines()
            .find(|l| l.split('\t').next() == Some(key))
            .unwrap();
        line.split('\t').nth(1).unwrap().parse().unwrap()
    };

    // The header record (key 0) is last in the file: cutting the file's end breaks opening.
    std::fs::write(&rec, &bytes[..bytes.len() - 4]).unwrap();
    let err = RecordDataset::open(&dir).unwrap_err().to_string();
    let header_at = offset_of("0");
    assert!(err.contains("train.rec"), "{err}");
    assert!(
        err.contains(&format!("byte {header_at}")) && err.contains("truncated"),
        "{err}"
    );

    // Cut in the middle of image 6's bytes, with the header record intact in the index: the
    // image read fails and names key 6's offset.
    let image6 = offset_of("6");
    std::fs::write(&rec, &bytes[..image6 as usize + 100]).unwrap();
    std::fs::write(&idx, format!("1\t{}\n6\t{image6}\n", offset_of("1"))).unwrap();
    let ds = RecordDataset::open(&dir).unwrap();
    let err = ds.encoded(1).unwrap_err().to_string();
    assert!(
        err.contains(&format!("corrupt record at byte {image6}")),
        "{err}"
    );

    // An index line pointing past the end of the file.
    std::fs::write(&rec, &bytes).unwrap();
    std::fs::write(&idx, format!("{index}9\t{}\n", bytes.len() + 8)).unwrap();
    let err = RecordDataset::open(&dir).unwrap_err().to_string();
    let line = index.lines().count() + 1;
    assert!(
        err.contains(&format!("train.idx:{line}")) && err.contains("past the end"),
        "{err}"
    );

    // An index line pointing into the middle of a record.
    std::fs::write(&idx, format!("1\t{}\n", offset_of("1") + 4)).unwrap();
    let err = RecordDataset::open(&dir)
        .unwrap()
        .encoded(0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad magic"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_image_bytes_name_the_record() {
    let dir = scratch("corrupt-image");
    let mut writer = RecordDatasetWriter::create(&dir, 112, 112).unwrap();
    writer
        .add_image(0, b"\xff\xd8\xff\xe0 this is no jpeg")
        .unwrap();
    writer.finish().unwrap();
    let ds = RecordDataset::open(&dir).unwrap();
    let face = ds.encoded(0).unwrap();
    let err = decode_face(&face.bytes, &face.origin, 112)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.rec record 1 (byte 0)") && err.contains("cannot decode"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn packed_folder_reads_back_as_the_folder() {
    let dir = scratch("pack");
    let faces = SyntheticFaces::new(SyntheticConfig {
        identities: 3,
        images_per_identity: 2,
        codec: ImageCodec::Png,
        ..Default::default()
    })
    .unwrap();
    faces.write_folders(&dir.join("folders")).unwrap();
    let summary = pack_folder(&dir.join("folders"), &dir.join("rec")).unwrap();
    assert_eq!(
        (summary.images, summary.identities, summary.size),
        (6, 3, (112, 112))
    );
    let folder = ImageFolder::open(&dir.join("folders")).unwrap();
    let rec = RecordDataset::open(&dir.join("rec")).unwrap();
    assert_eq!(rec.property().unwrap().classes, 3);
    for i in 0..6 {
        let (a, b) = (folder.encoded(i).unwrap(), rec.encoded(i).unwrap());
        assert_eq!((a.bytes, a.label), (b.bytes, b.label));
    }
    // The images are the rendered faces, losslessly.
    let first = rec.encoded(2).unwrap();
    assert!(decode_face(&first.bytes, &first.origin, 112).unwrap() == faces.render(1, 0));
    let labels = ImageFolder::read_label_map(&dir.join("rec/labels.tsv")).unwrap();
    assert_eq!(labels, ["0000000", "0000001", "0000002"]);

    // A corrupt file in the folder stops packing with its path.
    std::fs::write(dir.join("folders/0000001/00001.png"), b"\x89PNG broken").unwrap();
    let err = pack_folder(&dir.join("folders"), &dir.join("rec2"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("0000001/00001.png"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
