//! [`RecordDataset`]: an insightface `train.rec` (or a plain im2rec file) opened for random access.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::face_source::{EncodedFace, FaceSource};
use crate::ir_header::IrHeader;
use crate::property::Property;
use crate::record_index::RecordIndex;
use crate::record_io::{read_record, ByteSource, RecordFile};

/// One record read from a `.rec` file.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceRecord {
    /// The key of the record in the index.
    pub key: u64,
    /// Byte offset of the record in the `.rec` file.
    pub offset: u64,
    /// The parsed IRHeader.
    pub header: IrHeader,
    /// The bytes after the header and its vector labels (the encoded image; empty for header
    /// and identity records).
    pub body: Vec<u8>,
}

/// How the records of a file are organised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordLayout {
    /// insightface: record 0 is a header whose labels give the image keys `1..images_end` and the
    /// per-identity records `images_end..identities_end` (empty when the header has one label).
    Insightface {
        /// One past the last image key.
        images_end: u64,
        /// The keys of the per-identity records.
        identity_keys: Range<u64>,
    },
    /// A plain im2rec file: every indexed record is an image, in index order.
    Plain,
}

/// A RecordIO training set: `train.rec`, `train.idx` and `property`.
///
/// Opening reads the index (or scans the `.rec` file when the index is missing) and record 0;
/// images are read on demand with positioned reads, so several threads can share one dataset.
#[derive(Debug)]
pub struct RecordDataset {
    rec_path: PathBuf,
    file: RecordFile,
    index: RecordIndex,
    layout: RecordLayout,
    image_keys: Vec<u64>,
    property: Option<Property>,
}

/// Turns a float label into a class index, as insightface's `int(label)` would, refusing values
/// that are not exactly a non-negative integer (a float label is how issue #1437 broke training).
pub fn class_index(label: f32) -> std::result::Result<usize, String> {
    if label.is_finite() && label >= 0.0 && label.fract() == 0.0 && label < 16_777_216.0 {
        Ok(label as usize)
    } else {
        Err(format!(
            "label {label} is not a class index (a non-negative integer below 2^24)"
        ))
    }
}

impl RecordDataset {
    /// Opens a folder holding `train.rec` (plus `train.idx` and `property` when present), or a
    /// `.rec` file with its `.idx` and the `property` file of its folder.
    pub fn open(path: &Path) -> Result<Self> {
        let rec_path = if path.is_dir() {
            path.join("train.rec")
        } else {
            path.to_path_buf()
        };
        let idx_path = rec_path.with_extension("idx");
        let property_path = rec_path.parent().unwrap_or(Path::new(".")).join("property");
        let file = RecordFile::open(&rec_path)?;
        let index = if idx_path.exists() {
            RecordIndex::read(&idx_path, file.size())?
        } else {
            RecordIndex::scan(&file, &rec_path)?
        };
        let property = if property_path.exists() {
            Some(Property::read(&property_path)?)
        } else {
            None
        };
        let mut dataset = Self {
            rec_path,
            file,
            index,
            layout: RecordLayout::Plain,
            image_keys: Vec::new(),
            property,
        };
        dataset.layout = dataset.detect_layout()?;
        dataset.image_keys = match &dataset.layout {
            RecordLayout::Insightface { images_end, .. } => (1..*images_end).collect(),
            RecordLayout::Plain => dataset
                .index
                .entries()
                .iter()
                .map(|&(key, _)| key)
                .collect(),
        };
        if let Some(&key) = dataset
            .image_keys
            .iter()
            .find(|&&k| dataset.index.offset(k).is_none())
        {
            return Err(DataError::MissingKey {
                path: dataset.rec_path,
                key,
            });
        }
        Ok(dataset)
    }

    fn detect_layout(&self) -> Result<RecordLayout> {
        if self.index.offset(0).is_none() {
            return Ok(RecordLayout::Plain);
        }
        let header = self.record(0)?;
        if header.header.flag == 0 {
            return Ok(RecordLayout::Plain);
        }
        let bad = |reason: String| DataError::BadLabel {
            path: self.rec_path.clone(),
            key: 0,
            offset: header.offset,
            reason,
        };
        let labels = &header.header.labels;
        let images_end = class_index(labels[0]).map_err(&bad)? as u64;
        if images_end == 0 {
            return Err(bad("header record says images end at key 0".into()));
        }
        let identities_end = match labels.get(1) {
            Some(&end) => class_index(end).map_err(&bad)? as u64,
            None => images_end,
        };
        if identities_end < images_end {
            return Err(bad(format!(
                "identity records end at key {identities_end}, before the images end at \
                 {images_end}"
            )));
        }
        Ok(RecordLayout::Insightface {
            images_end,
            identity_keys: images_end..identities_end,
        })
    }

    /// The `.rec` file.
    pub fn rec_path(&self) -> &Path {
        &self.rec_path
    }

    /// The layout found in record 0.
    pub fn layout(&self) -> &RecordLayout {
        &self.layout
    }

    /// The index of the file.
    pub fn index(&self) -> &RecordIndex {
        &self.index
    }

    /// The `property` file, when there is one.
    pub fn property(&self) -> Option<Property> {
        self.property
    }

    /// Keys of the image records, in the order images are numbered.
    pub fn image_keys(&self) -> &[u64] {
        &self.image_keys
    }

    /// Reads the record with `key`.
    pub fn record(&self, key: u64) -> Result<FaceRecord> {
        let offset = self
            .index
            .offset(key)
            .ok_or_else(|| DataError::MissingKey {
                path: self.rec_path.clone(),
                key,
            })?;
        let payload = read_record(&self.file, &self.rec_path, offset)?.0;
        let (header, body) = IrHeader::parse(&payload).map_err(|reason| {
            DataError::corrupt(&self.rec_path, offset, format!("record {key}: {reason}"))
        })?;
        Ok(FaceRecord {
            key,
            offset,
            header,
            body: body.to_vec(),
        })
    }

    /// The image ranges of every identity, read from the per-identity records: entry `c` holds
    /// the image keys of class `c`. Empty for a plain file.
    pub fn identity_ranges(&self) -> Result<Vec<Range<u64>>> {
        let RecordLayout::Insightface { identity_keys, .. } = &self.layout else {
            return Ok(Vec::new());
        };
        identity_keys
            .clone()
            .map(|key| {
                let record = self.record(key)?;
                let labels = &record.header.labels;
                let bad = |reason: String| DataError::BadLabel {
                    path: self.rec_path.clone(),
                    key,
                    offset: record.offset,
                    reason,
                };
                if labels.len() < 2 {
                    return Err(bad(
                        "identity record without a [start, end) label pair".into()
                    ));
                }
                let start = class_index(labels[0]).map_err(bad)? as u64;
                let end = class_index(labels[1]).map_err(bad)? as u64;
                Ok(start..end)
            })
            .collect()
    }

    /// Reads every image header and returns the labels, in image order.
    pub fn scan_labels(&self) -> Result<Vec<usize>> {
        (0..self.image_keys.len())
            .map(|i| Ok(self.image(i)?.1))
            .collect()
    }

    /// The `i`-th image record and its class, checked against [`FaceSource::num_classes`].
    pub fn image(&self, i: usize) -> Result<(FaceRecord, usize)> {
        let key = self.image_keys[i];
        let record = self.record(key)?;
        let bad = |reason: String| DataError::BadLabel {
            path: self.rec_path.clone(),
            key,
            offset: record.offset,
            reason,
        };
        let label = class_index(record.header.class_label()).map_err(bad)?;
        if let Some(classes) = self.num_classes() {
            if label >= classes {
                return Err(bad(format!(
                    "label {label} is out of range for {classes} classes"
                )));
            }
        }
        Ok((record, label))
    }
}

impl FaceSource for RecordDataset {
    fn len(&self) -> usize {
        self.image_keys.len()
    }

    /// The per-identity record count for insightface files that have them, else `property`.
    fn num_classes(&self) -> Option<usize> {
        match &self.layout {
            RecordLayout::Insightface { identity_keys, .. } if !identity_keys.is_empty() => {
                Some((identity_keys.end - identity_keys.start) as usize)
            }
            _ => self.property.map(|p| p.classes),
        }
    }

    fn encoded(&self, index: usize) -> Result<EncodedFace> {
        let (record, label) = self.image(index)?;
        let origin = format!(
            "{} record {} (byte {})",
            self.rec_path.display(),
            record.key,
            record.offset
        );
        Ok(EncodedFace {
            bytes: record.body,
            label,
            origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_io::RecordWriter;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lvface-data-rd-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes records (key, header, body) in the given order and an index for them.
    fn write_rec(dir: &Path, records: &[(u64, IrHeader, &[u8])], with_idx: bool) {
        let rec = dir.join("train.rec");
        let mut writer = RecordWriter::new(std::fs::File::create(&rec).unwrap(), &rec);
        let mut idx = String::new();
        for (key, header, body) in records {
            let offset = writer.write_record(&header.pack(body)).unwrap();
            idx.push_str(&format!("{key}\t{offset}\n"));
        }
        writer.finish().unwrap();
        if with_idx {
            std::fs::write(dir.join("train.idx"), idx).unwrap();
        }
    }

    #[test]
    fn insightface_header_record_gives_images_and_identities() {
        let dir = scratch("insightface");
        // Two identities: keys 1, 2 are class 0, key 3 is class 1; identity records 4, 5.
        write_rec(
            &dir,
            &[
                (1, IrHeader::scalar(0.0, 1), b"img1"),
                (2, IrHeader::scalar(0.0, 2), b"img2"),
                (3, IrHeader::scalar(1.0, 3), b"img3"),
                (4, IrHeader::vector(vec![1.0, 3.0], 4), b""),
                (5, IrHeader::vector(vec![3.0, 4.0], 5), b""),
                (0, IrHeader::vector(vec![4.0, 6.0], 0), b""),
            ],
            true,
        );
        let ds = RecordDataset::open(&dir).unwrap();
        assert_eq!(
            ds.layout(),
            &RecordLayout::Insightface {
                images_end: 4,
                identity_keys: 4..6
            }
        );
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.num_classes(), Some(2));
        assert_eq!(ds.identity_ranges().unwrap(), vec![1..3, 3..4]);
        assert_eq!(ds.scan_labels().unwrap(), vec![0, 0, 1]);
        let face = ds.encoded(2).unwrap();
        assert_eq!((face.bytes.as_slice(), face.label), (b"img3".as_slice(), 1));
        assert!(face.origin.contains("record 3"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn plain_im2rec_file_uses_every_key_and_vector_labels() {
        let dir = scratch("plain");
        write_rec(
            &dir,
            &[
                (0, IrHeader::scalar(2.0, 0), b"a"),
                (1, IrHeader::vector(vec![1.0, 0.5], 1), b"b"),
            ],
            true,
        );
        let ds = RecordDataset::open(&dir).unwrap();
        assert_eq!(ds.layout(), &RecordLayout::Plain);
        assert_eq!(ds.scan_labels().unwrap(), vec![2, 1]);
        assert_eq!(ds.num_classes(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_index_is_replaced_by_a_scan() {
        let dir = scratch("noidx");
        write_rec(
            &dir,
            &[
                (1, IrHeader::scalar(0.0, 1), b"x"),
                (2, IrHeader::vector(vec![1.0, 2.0], 2), b""),
                (0, IrHeader::vector(vec![2.0, 3.0], 0), b""),
            ],
            false,
        );
        let ds = RecordDataset::open(&dir.join("train.rec")).unwrap();
        assert_eq!(ds.len(), 1);
        assert_eq!(ds.identity_ranges().unwrap(), vec![1..2]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_labels_are_typed_errors_naming_the_record() {
        let dir = scratch("labels");
        write_rec(
            &dir,
            &[
                (0, IrHeader::scalar(1.5, 0), b"a"),
                (1, IrHeader::scalar(7.0, 1), b"b"),
            ],
            true,
        );
        std::fs::write(dir.join("property"), "3,112,112\n").unwrap();
        let ds = RecordDataset::open(&dir).unwrap();
        let err = ds.encoded(0).unwrap_err().to_string();
        assert!(
            err.contains("record 0 at byte 0") && err.contains("1.5"),
            "{err}"
        );
        let err = ds.encoded(1).unwrap_err().to_string();
        assert!(
            err.contains("record 1") && err.contains("out of range for 3 classes"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn class_index_accepts_only_exact_integers() {
        assert_eq!(class_index(12.0), Ok(12));
        for bad in [-1.0, 0.5, f32::NAN, f32::INFINITY, 1e9] {
            assert!(class_index(bad).is_err(), "{bad}");
        }
    }
}
