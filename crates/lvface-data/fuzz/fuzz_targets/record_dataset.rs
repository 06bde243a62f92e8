//! Arbitrary bytes as an insightface training folder (`train.rec` and, when the first byte
//! says so, a `property` file): opening it, reading its header bounds, identity ranges and
//! labels, and every image record returns data or an error, never panics or allocates past
//! what the records hold.
//!
//! Input layout: byte 0 is the length `n` of the `property` text that follows (0: no file), and
//! the rest is the `.rec` file. There is no `.idx`, so the index is a scan of the records.

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lvface_data::{FaceSource, RecordDataset};

fn folder() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lvface-fuzz-dataset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the scratch folder should be writable");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n).min(rest.len());
    let (property, rec) = rest.split_at(n);
    let dir = folder();
    let property_path = dir.join("property");
    if n == 0 {
        let _ = std::fs::remove_file(&property_path);
    } else {
        std::fs::write(&property_path, property).expect("property should be writable");
    }
    std::fs::write(dir.join("train.rec"), rec).expect("train.rec should be writable");

    let Ok(dataset) = RecordDataset::open(dir) else {
        return;
    };
    let _ = dataset.property();
    let _ = dataset.num_classes();
    if let Ok(ranges) = dataset.identity_ranges() {
        assert!(ranges.len() <= dataset.index().len());
    }
    assert!(dataset.len() <= dataset.index().len());
    let _ = dataset.scan_labels();
    for i in 0..dataset.len().min(64) {
        if let Ok(face) = dataset.encoded(i) {
            assert!(face.bytes.len() <= rec.len());
        }
    }
});
