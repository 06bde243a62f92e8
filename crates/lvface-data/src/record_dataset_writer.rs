//! [`RecordDatasetWriter`]: writes `train.rec`, `train.idx` and `property` in insightface's layout.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::ir_header::IrHeader;
use crate::property::Property;
use crate::record_io::RecordWriter;

/// Writes a training set the way insightface's builder does:
///
/// - images at keys `1..=N` with `IRHeader(0, class, key, 0)`;
/// - then one record per identity at keys `N+1..=N+C` with label `[first_key, last_key + 1]`
///   and an empty body;
/// - then, last in the file, record 0 with label `[N+1, N+C+1]`;
/// - `.idx` lines in write order, and `property` = `C,height,width`.
///
/// Images must arrive grouped by identity with non-decreasing labels, so that each identity's
/// images form one key range. A class with no image gets an empty range.
///
/// insightface's `MXFaceDataset` reads the images as keys `range(1, int(label[0]))` from the
/// header's float32 label, so a set whose `N + 1` float32 cannot hold (above 2^24) would lose
/// its last images or read identity records as images there. The writer therefore repeats the
/// last image (at most 3 times, below 2^27 images) until `N + 1` is exact in float32; the
/// count returned by [`RecordDatasetWriter::finish`] includes the repeats. The identity records'
/// own labels may still be rounded; insightface's training does not read them, and
/// [`crate::RecordDataset`] finds their exact values.
#[derive(Debug)]
pub struct RecordDatasetWriter {
    rec_path: PathBuf,
    idx_path: PathBuf,
    property_path: PathBuf,
    records: RecordWriter<BufWriter<File>>,
    idx: BufWriter<File>,
    /// First image key of each class seen so far.
    class_starts: Vec<u64>,
    next_key: u64,
    /// The last image's class and bytes, repeated when `N + 1` is not exact in float32.
    last_image: Option<(usize, Vec<u8>)>,
    height: u32,
    width: u32,
}

impl RecordDatasetWriter {
    /// Creates `dir` if needed and `dir/train.rec`, `dir/train.idx`, for images of
    /// `height` x `width` (written to `property`).
    pub fn create(dir: &Path, height: u32, width: u32) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let rec_path = dir.join("train.rec");
        let idx_path = dir.join("train.idx");
        let rec = File::create(&rec_path).map_err(|e| DataError::io(&rec_path, e))?;
        let idx = File::create(&idx_path).map_err(|e| DataError::io(&idx_path, e))?;
        Ok(Self {
            records: RecordWriter::new(BufWriter::new(rec), &rec_path),
            idx: BufWriter::new(idx),
            rec_path,
            idx_path,
            property_path: dir.join("property"),
            class_starts: Vec::new(),
            next_key: 1,
            last_image: None,
            height,
            width,
        })
    }

    fn write(&mut self, key: u64, header: &IrHeader, body: &[u8]) -> Result<()> {
        let offset = self.records.write_record(&header.pack(body))?;
        writeln!(self.idx, "{key}\t{offset}").map_err(|e| DataError::io(&self.idx_path, e))
    }

    /// Appends one encoded image of class `label` and returns its key.
    pub fn add_image(&mut self, label: usize, encoded: &[u8]) -> Result<u64> {
        let current = self.class_starts.len();
        if label + 1 < current {
            return Err(DataError::BadWrite {
                path: self.rec_path.clone(),
                reason: format!(
                    "labels must arrive grouped by identity in increasing order: got {label} \
                     after {}",
                    current - 1
                ),
            });
        }
        if label >= 1 << 24 {
            return Err(DataError::BadWrite {
                path: self.rec_path.clone(),
                reason: format!("label {label} does not fit an f32 exactly"),
            });
        }
        let key = self.next_key;
        self.class_starts.resize(label + 1, key);
        self.write(key, &IrHeader::scalar(label as f32, key), encoded)?;
        self.next_key += 1;
        let (last_label, last_bytes) = self.last_image.get_or_insert_with(Default::default);
        *last_label = label;
        last_bytes.clear();
        last_bytes.extend_from_slice(encoded);
        Ok(key)
    }

    /// Writes the identity records, the header record and `property`; returns the number of
    /// images and of classes.
    pub fn finish(mut self) -> Result<(usize, usize)> {
        if let Some((label, bytes)) = self.last_image.take() {
            while self.next_key < first_exact_in_f32(self.next_key) {
                let key = self.next_key;
                self.write(key, &IrHeader::scalar(label as f32, key), &bytes)?;
                self.next_key += 1;
            }
        }
        let images_end = self.next_key;
        let classes = self.class_starts.len();
        let starts = std::mem::take(&mut self.class_starts);
        for (class, &start) in starts.iter().enumerate() {
            let end = starts.get(class + 1).copied().unwrap_or(images_end);
            let key = images_end + class as u64;
            self.write(
                key,
                &IrHeader::vector(vec![start as f32, end as f32], key),
                &[],
            )?;
        }
        let identities_end = images_end + classes as u64;
        self.write(
            0,
            &IrHeader::vector(vec![images_end as f32, identities_end as f32], 0),
            &[],
        )?;
        self.records.finish()?;
        self.idx
            .flush()
            .map_err(|e| DataError::io(&self.idx_path, e))?;
        Property {
            classes,
            height: self.height,
            width: self.width,
        }
        .write(&self.property_path)?;
        Ok(((images_end - 1) as usize, classes))
    }
}

/// The smallest key at or above `key` that float32 holds exactly.
fn first_exact_in_f32(key: u64) -> u64 {
    (key..)
        .find(|&k| k as f32 as u64 == k)
        .expect("float32 holds keys of every size")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_io::RECORD_MAGIC;
    use crate::{FaceSource, RecordDataset, RecordLayout};

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("lvface-data-rw-{name}-{}", std::process::id()))
    }

    #[test]
    fn image_counts_are_padded_to_a_float32_exact_header() {
        assert_eq!(first_exact_in_f32(5), 5);
        assert_eq!(first_exact_in_f32(1 << 24), 1 << 24);
        // 16,778,216 images: N + 1 = 16,778,217 is stored as 16,778,216; one repeat.
        assert_eq!(first_exact_in_f32(16_778_217), 16_778_218);
        // WebFace42M: 42,474,557 images, N + 1 = 42,474,558 is stored as 42,474,560.
        assert_eq!(first_exact_in_f32(42_474_558), 42_474_560);
        for key in (1u64 << 24..1 << 24 | 1 << 12).chain(1 << 26..(1 << 26) + 100) {
            let end = first_exact_in_f32(key);
            assert!(end - key < 8 && end as f32 as u64 == end, "{key} -> {end}");
        }
    }

    #[test]
    fn written_files_have_insightface_layout_and_read_back() {
        let dir = scratch("layout");
        let magic = RECORD_MAGIC.to_le_bytes();
        let tricky = [b"ab".as_slice(), &[0, 0], &magic, b"cd"].concat();
        let images: [(usize, &[u8]); 4] = [(0, b"a0"), (0, &tricky), (2, b"c0"), (2, b"c1")];
        let mut writer = RecordDatasetWriter::create(&dir, 112, 112).unwrap();
        for (label, bytes) in images {
            writer.add_image(label, bytes).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), (4, 3));

        assert_eq!(
            std::fs::read_to_string(dir.join("property")).unwrap(),
            "3,112,112\n"
        );
        let idx = std::fs::read_to_string(dir.join("train.idx")).unwrap();
        let keys: Vec<&str> = idx.lines().map(|l| l.split('\t').next().unwrap()).collect();
        assert_eq!(keys, ["1", "2", "3", "4", "5", "6", "7", "0"]);

        let ds = RecordDataset::open(&dir).unwrap();
        assert_eq!(
            ds.layout(),
            &RecordLayout::Insightface {
                images_end: 5,
                identity_keys: 5..8
            }
        );
        assert_eq!(ds.identity_ranges().unwrap(), vec![1..3, 3..3, 3..5]);
        for (i, (label, bytes)) in images.iter().enumerate() {
            let face = ds.encoded(i).unwrap();
            assert_eq!((face.label, face.bytes.as_slice()), (*label, *bytes));
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn labels_out_of_order_are_refused() {
        let dir = scratch("order");
        let mut writer = RecordDatasetWriter::create(&dir, 112, 112).unwrap();
        writer.add_image(1, b"x").unwrap();
        writer.add_image(1, b"y").unwrap();
        let err = writer.add_image(0, b"z").unwrap_err().to_string();
        assert!(err.contains("grouped by identity"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
