//! A set of more than 2^24 images, where insightface's float32 header labels are rounded: the
//! reader must find every bound exactly, never read an identity record as an image, hold the
//! index in 8 bytes a record, and open it a second time from the binary index copy.

use std::path::PathBuf;

use lvface_data::{
    encode_jpeg, even_class_starts, write_shared_record_set, FaceSource, IndexOrigin,
    RecordDataset, RecordLayout,
};

/// 2^24 + 1000 images: `N + 1` = 16,778,217 is stored as 16,778,216.
const IMAGES: u64 = (1 << 24) + 1000;
const IDENTITIES: usize = 1000;

/// Classes 0..500 share the first 2^24 images; classes 500..1000 have two images each above
/// 2^24, so half of their bounds are odd keys that float32 rounds.
fn class_starts() -> Vec<u64> {
    let mut starts = even_class_starts(1 << 24, 500);
    starts.extend((1..=500u64).map(|i| (1 << 24) + 1 + 2 * i));
    assert_eq!(starts.len(), IDENTITIES + 1);
    assert_eq!(*starts.last().unwrap(), IMAGES + 1);
    starts
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lvface-data-large-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

fn check(ds: &RecordDataset) {
    let images_end = IMAGES + 1;
    assert_eq!(
        ds.layout(),
        &RecordLayout::Insightface {
            images_end,
            identity_keys: images_end..images_end + IDENTITIES as u64,
        }
    );
    assert_eq!(ds.len() as u64, IMAGES);
    assert_eq!(ds.num_classes(), Some(IDENTITIES));
    // The index holds 8 bytes a record (images, identity records and the header).
    let records = IMAGES as usize + IDENTITIES + 1;
    assert_eq!(ds.index().len(), records);
    assert!(
        ds.index().heap_bytes() <= 8 * records,
        "{}",
        ds.index().heap_bytes()
    );
    // The last image is key N of the last class; the key after it is an identity record.
    let (last, label) = ds.image(IMAGES as usize - 1).unwrap();
    assert_eq!(
        (last.key, last.header.flag, label),
        (IMAGES, 0, IDENTITIES - 1)
    );
    assert_eq!(ds.record(images_end).unwrap().header.flag, 2);
    // Identity bounds above 2^24 are stored rounded; the exact ones come from the images.
    let ranges = ds.identity_ranges().unwrap();
    let starts = class_starts();
    let expected: Vec<_> = starts.windows(2).map(|w| w[0]..w[1]).collect();
    assert_eq!(ranges, expected);
    let rounded = expected
        .iter()
        .filter(|r| r.end as f32 as u64 != r.end)
        .count();
    assert!(
        rounded > 400,
        "only {rounded} rounded bounds: the test would not test rounding"
    );
    // Every image of a class boundary has the class of its range.
    for (class, range) in expected.iter().enumerate().skip(IDENTITIES - 3) {
        for key in [range.start, range.end - 1] {
            let (_, label) = ds.image(key as usize - 1).unwrap();
            assert_eq!(label, class, "key {key}");
        }
    }
}

#[test]
fn a_set_above_two_to_the_24_opens_exactly_from_text_and_from_its_index_copy() {
    assert_ne!(
        (IMAGES + 1) as f32 as u64,
        IMAGES + 1,
        "the header must be rounded"
    );
    let dir = scratch();
    let face = image::RgbImage::from_pixel(16, 16, image::Rgb([90, 120, 150]));
    let jpeg = encode_jpeg(&face, 90, "test face").unwrap();
    write_shared_record_set(&dir, &class_starts(), &jpeg, (16, 16)).unwrap();

    let first = RecordDataset::open(&dir).unwrap();
    assert_eq!(first.index_origin(), &IndexOrigin::Text { cached: true });
    check(&first);
    let second = RecordDataset::open(&dir).unwrap();
    assert!(
        matches!(second.index_origin(), IndexOrigin::Cache(_)),
        "{:?}",
        second.index_origin()
    );
    assert_eq!(second.index(), first.index());
    check(&second);
    std::fs::remove_dir_all(dir).unwrap();
}
