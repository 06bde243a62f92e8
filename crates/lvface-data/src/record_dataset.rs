//! [`RecordDataset`]: an insightface `train.rec` (or a plain im2rec file) opened for random access.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::face_source::{EncodedFace, FaceSource};
use crate::header_bounds::{resolve_bound, rounding_window, stored_bound};
use crate::index_cache::{self, IndexOrigin};
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
    /// Both bounds are exact, also where the header's float32 labels are rounded (see
    /// `docs/data.md`).
    Insightface {
        /// One past the last image key.
        images_end: u64,
        /// The keys of the per-identity records.
        identity_keys: Range<u64>,
    },
    /// A plain im2rec file: every indexed record is an image, by ascending key.
    Plain,
}

/// The keys of the images, in the order images are numbered.
#[derive(Debug)]
enum ImageKeys {
    /// Image `i` is key `start + i`: the insightface layout, and plain files without holes.
    Range(Range<u64>),
    /// Any other plain file.
    List(Vec<u64>),
}

/// A RecordIO training set: `train.rec`, `train.idx` and `property`.
///
/// Opening reads the index (from its binary copy `train.lvidx` when that is current, see
/// [`IndexOrigin`]; or by scanning the `.rec` file when there is no `.idx`) and record 0; images
/// are read on demand with positioned reads, so several threads can share one dataset. The
/// index takes 8 bytes a record.
#[derive(Debug)]
pub struct RecordDataset {
    rec_path: PathBuf,
    file: RecordFile,
    index: RecordIndex,
    index_origin: IndexOrigin,
    layout: RecordLayout,
    images: ImageKeys,
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

/// The index of `idx_path`: its binary copy when current, else the text (writing a copy for the
/// next open when the folder allows), else a scan of the `.rec` file.
fn open_index(
    idx_path: &Path,
    rec_path: &Path,
    file: &RecordFile,
) -> Result<(RecordIndex, IndexOrigin)> {
    if !idx_path.exists() {
        return Ok((RecordIndex::scan(file, rec_path)?, IndexOrigin::Scan));
    }
    if let Some(index) = index_cache::load(idx_path, file.size()) {
        return Ok((index, IndexOrigin::Cache(index_cache::cache_path(idx_path))));
    }
    let index = RecordIndex::read(idx_path, file.size())?;
    let cached =
        index.len() >= CACHE_FROM_RECORDS && index_cache::store(idx_path, file.size(), &index);
    Ok((index, IndexOrigin::Text { cached }))
}

/// Below this many records the text is read in milliseconds and no copy is written.
const CACHE_FROM_RECORDS: usize = 100_000;

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
        let (index, index_origin) = open_index(&idx_path, &rec_path, &file)?;
        let property = if property_path.exists() {
            Some(Property::read(&property_path)?)
        } else {
            None
        };
        let mut dataset = Self {
            rec_path,
            file,
            index,
            index_origin,
            layout: RecordLayout::Plain,
            images: ImageKeys::Range(0..0),
            property,
        };
        dataset.layout = dataset.detect_layout()?;
        dataset.images = match &dataset.layout {
            RecordLayout::Insightface { images_end, .. } => ImageKeys::Range(1..*images_end),
            RecordLayout::Plain => match (dataset.index.entries().next(), dataset.index.last_key())
            {
                (Some((first, _)), Some(last))
                    if last - first + 1 == dataset.index.len() as u64 =>
                {
                    ImageKeys::Range(first..last + 1)
                }
                _ => ImageKeys::List(dataset.index.entries().map(|(key, _)| key).collect()),
            },
        };
        if let ImageKeys::Range(keys) = &dataset.images {
            if let Some(key) = dataset.index.first_missing(keys.clone()) {
                return Err(DataError::MissingKey {
                    path: dataset.rec_path,
                    key,
                });
            }
        }
        Ok(dataset)
    }

    /// The flag of record `key` (0 for an image, the label count for a header or identity
    /// record), or `None` when the key is not indexed.
    fn flag(&self, key: u64) -> Result<Option<u32>> {
        if self.index.offset(key).is_none() {
            return Ok(None);
        }
        Ok(Some(self.record(key)?.header.flag))
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
        let stored_images_end = stored_bound(labels[0]).map_err(&bad)?;
        if stored_images_end == 0 {
            return Err(bad("header record says images end at key 0".into()));
        }
        let images_end =
            resolve_bound(
                stored_images_end,
                |k| Ok(k >= 1 && self.flag(k)? == Some(0)),
            )?
            .ok_or_else(|| {
                bad(format!(
                    "header label {stored_images_end} (one past the last image) is not within \
                     float32 rounding of a change from image records (flag 0) to others"
                ))
            })?;
        let identities_end = match labels.get(1) {
            Some(&end) => {
                let stored = stored_bound(end).map_err(&bad)?;
                resolve_bound(stored, |k| {
                    Ok(k < images_end || self.index.offset(k).is_some())
                })?
                .ok_or_else(|| {
                    bad(format!(
                        "header label {stored} (one past the last identity record) is not \
                             within float32 rounding of the last indexed key"
                    ))
                })?
            }
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

    /// Where the index came from.
    pub fn index_origin(&self) -> &IndexOrigin {
        &self.index_origin
    }

    /// The key of image `i`, in the order images are numbered.
    pub fn image_key(&self, i: usize) -> u64 {
        match &self.images {
            ImageKeys::Range(keys) => keys.start + i as u64,
            ImageKeys::List(keys) => keys[i],
        }
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
    /// the image keys of class `c`. Where a record's float32 labels are rounded (keys above
    /// 2^24), the exact bound is found in the images' own labels. Empty for a plain file.
    pub fn identity_ranges(&self) -> Result<Vec<Range<u64>>> {
        let RecordLayout::Insightface {
            images_end,
            identity_keys,
        } = &self.layout
        else {
            return Ok(Vec::new());
        };
        // Whether key `k` lies before the first image of class `c`.
        let before_class = |k: u64, c: usize| -> Result<bool> {
            if k == 0 {
                return Ok(true);
            }
            if k >= *images_end {
                return Ok(false);
            }
            let record = self.record(k)?;
            let label =
                class_index(record.header.class_label()).map_err(|reason| DataError::BadLabel {
                    path: self.rec_path.clone(),
                    key: k,
                    offset: record.offset,
                    reason,
                })?;
            Ok(label < c)
        };
        let mut ranges: Vec<Range<u64>> =
            Vec::with_capacity((identity_keys.end - identity_keys.start) as usize);
        for (class, key) in identity_keys.clone().enumerate() {
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
            let stored_start = stored_bound(labels[0]).map_err(bad)?;
            let stored_end = stored_bound(labels[1]).map_err(bad)?;
            let not_found = |stored: u64, what: &str| {
                bad(format!(
                    "label {stored} ({what} of class {class}) is not within float32 rounding of \
                     where the images' labels change"
                ))
            };
            // The previous class's end is this one's start; reuse it when the label agrees.
            let start = match ranges.last() {
                Some(previous) if rounding_window(stored_start).contains(&previous.end) => {
                    previous.end
                }
                _ => resolve_bound(stored_start, |k| before_class(k, class))?
                    .ok_or_else(|| not_found(stored_start, "first image key"))?,
            };
            let end = resolve_bound(stored_end, |k| before_class(k, class + 1))?
                .ok_or_else(|| not_found(stored_end, "one past the last image key"))?;
            if end < start {
                return Err(bad(format!("image range {start}..{end} is reversed")));
            }
            ranges.push(start..end);
        }
        Ok(ranges)
    }

    /// Reads every image header and returns the labels, in image order.
    pub fn scan_labels(&self) -> Result<Vec<usize>> {
        (0..self.len()).map(|i| Ok(self.image(i)?.1)).collect()
    }

    /// The `i`-th image record and its class, checked against [`FaceSource::num_classes`].
    pub fn image(&self, i: usize) -> Result<(FaceRecord, usize)> {
        let key = self.image_key(i);
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
        match &self.images {
            ImageKeys::Range(keys) => (keys.end - keys.start) as usize,
            ImageKeys::List(keys) => keys.len(),
        }
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
