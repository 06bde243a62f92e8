//! [`RecordIndex`]: the `.idx` companion of a `.rec` file, read, written and rebuilt.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use crate::error::{DataError, Result};
use crate::ir_header::IrHeader;
use crate::record_io::{read_record, scan_records, ByteSource, RecordFile};

/// Keys and byte offsets of the records of a `.rec` file, in file order of the `.idx` lines.
///
/// The `.idx` format is text, one `key\toffset` line per record; insightface writes key 0 (the
/// header record) last, so lines are not sorted by key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordIndex {
    entries: Vec<(u64, u64)>,
    by_key: HashMap<u64, u64>,
}

impl RecordIndex {
    /// An index of `(key, offset)` pairs, in this order. Keys must be distinct.
    pub fn from_entries(entries: Vec<(u64, u64)>) -> std::result::Result<Self, String> {
        let mut by_key = HashMap::with_capacity(entries.len());
        for &(key, offset) in &entries {
            if by_key.insert(key, offset).is_some() {
                return Err(format!("key {key} appears twice"));
            }
        }
        Ok(Self { entries, by_key })
    }

    /// Reads `idx_path`, checking each offset against `rec_size`, the length of the `.rec` file.
    pub fn read(idx_path: &Path, rec_size: u64) -> Result<Self> {
        let text = std::fs::read(idx_path).map_err(|e| DataError::io(idx_path, e))?;
        let bad = |line: usize, reason: String| DataError::BadIndex {
            path: idx_path.to_path_buf(),
            line,
            reason,
        };
        let text = String::from_utf8(text).map_err(|e| {
            bad(
                0,
                format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            )
        })?;
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split('\t');
            let (Some(key), Some(offset), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad(
                    line_no,
                    format!("expected `key<TAB>offset`, got {line:?}"),
                ));
            };
            let key: u64 = key.trim().parse().map_err(|_| {
                bad(
                    line_no,
                    format!("key {key:?} is not a non-negative integer"),
                )
            })?;
            let offset: u64 = offset.trim().parse().map_err(|_| {
                bad(
                    line_no,
                    format!("offset {offset:?} is not a non-negative integer"),
                )
            })?;
            if offset >= rec_size {
                return Err(bad(
                    line_no,
                    format!(
                        "key {key} points at byte {offset}, past the end of the .rec file \
                         ({rec_size} bytes)"
                    ),
                ));
            }
            if !seen.insert(key) {
                return Err(bad(line_no, format!("key {key} appears twice")));
            }
            entries.push((key, offset));
        }
        Ok(Self::from_entries(entries).expect("keys were checked to be distinct"))
    }

    /// Writes the index as `key\toffset` lines.
    pub fn write(&self, idx_path: &Path) -> Result<()> {
        let mut text = String::with_capacity(self.entries.len() * 16);
        for (key, offset) in &self.entries {
            text.push_str(&format!("{key}\t{offset}\n"));
        }
        let mut file = std::fs::File::create(idx_path).map_err(|e| DataError::io(idx_path, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| DataError::io(idx_path, e))
    }

    /// Builds an index by reading every record of `src` from the start.
    ///
    /// Keys are the records' IRHeader ids when every record has a header and the ids are
    /// distinct (insightface and im2rec write the key as the id, and insightface writes record 0
    /// last); otherwise keys count records in file order, as MXNet's `rec2idx.py` does.
    pub fn scan<S: ByteSource + ?Sized>(src: &S, path: &Path) -> Result<Self> {
        let offsets = scan_records(src, path)?;
        let mut ids = Vec::with_capacity(offsets.len());
        let mut seen = HashSet::with_capacity(offsets.len());
        for &offset in &offsets {
            let payload = read_record(src, path, offset)?.0;
            match IrHeader::parse(&payload) {
                Ok((header, _)) if seen.insert(header.id) => ids.push(header.id),
                _ => break,
            }
        }
        let keys: Vec<u64> = if ids.len() == offsets.len() {
            ids
        } else {
            (0..offsets.len() as u64).collect()
        };
        Ok(Self::from_entries(keys.into_iter().zip(offsets).collect())
            .expect("keys are distinct by construction"))
    }

    /// The `(key, offset)` pairs in file order.
    pub fn entries(&self) -> &[(u64, u64)] {
        &self.entries
    }

    /// The byte offset of `key`, if indexed.
    pub fn offset(&self, key: u64) -> Option<u64> {
        self.by_key.get(&key).copied()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Rebuilds `idx_path` from `rec_path` by a sequential scan (see [`RecordIndex::scan`]) and
/// returns the number of records indexed.
pub fn rebuild_index(rec_path: &Path, idx_path: &Path) -> Result<usize> {
    let file = RecordFile::open(rec_path)?;
    let index = RecordIndex::scan(&file, rec_path)?;
    index.write(idx_path)?;
    Ok(index.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_io::RecordWriter;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lvface-data-idx-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_lines_in_file_order_with_offsets_checked() {
        let dir = scratch("read");
        let idx = dir.join("a.idx");
        std::fs::write(&idx, "1\t0\n2\t16\n0\t40\n").unwrap();
        let index = RecordIndex::read(&idx, 48).unwrap();
        assert_eq!(index.entries(), &[(1, 0), (2, 16), (0, 40)]);
        assert_eq!(index.offset(0), Some(40));
        assert_eq!(index.offset(3), None);

        let err = RecordIndex::read(&idx, 40).unwrap_err().to_string();
        assert!(
            err.contains("a.idx:3") && err.contains("past the end"),
            "{err}"
        );
        std::fs::write(&idx, "1\t0\nx\t16\n").unwrap();
        let err = RecordIndex::read(&idx, 48).unwrap_err().to_string();
        assert!(err.contains("a.idx:2") && err.contains("\"x\""), "{err}");
        std::fs::write(&idx, "1\t0\n1\t16\n").unwrap();
        assert!(RecordIndex::read(&idx, 48)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn scan_uses_header_ids_when_distinct_else_counts() {
        let mut writer = RecordWriter::new(Vec::new(), "mem.rec");
        let o1 = writer
            .write_record(&IrHeader::scalar(0.0, 1).pack(b"one"))
            .unwrap();
        let o2 = writer
            .write_record(&IrHeader::scalar(0.0, 2).pack(b"two"))
            .unwrap();
        let o0 = writer
            .write_record(&IrHeader::vector(vec![3.0, 3.0], 0).pack(&[]))
            .unwrap();
        let bytes = writer.finish().unwrap();
        let index = RecordIndex::scan(&bytes, Path::new("mem.rec")).unwrap();
        assert_eq!(index.entries(), &[(1, o1), (2, o2), (0, o0)]);

        let mut writer = RecordWriter::new(Vec::new(), "mem.rec");
        let a = writer
            .write_record(&IrHeader::scalar(0.0, 5).pack(b"a"))
            .unwrap();
        let b = writer
            .write_record(&IrHeader::scalar(0.0, 5).pack(b"b"))
            .unwrap();
        let bytes = writer.finish().unwrap();
        let index = RecordIndex::scan(&bytes, Path::new("mem.rec")).unwrap();
        assert_eq!(index.entries(), &[(0, a), (1, b)]);
    }

    #[test]
    fn rebuild_writes_the_same_index_the_writer_would() {
        let dir = scratch("rebuild");
        let rec = dir.join("t.rec");
        let file = std::fs::File::create(&rec).unwrap();
        let mut writer = RecordWriter::new(file, &rec);
        let mut expected = Vec::new();
        for key in [1u64, 2, 3, 0] {
            let offset = writer
                .write_record(&IrHeader::scalar(key as f32, key).pack(b"x"))
                .unwrap();
            expected.push((key, offset));
        }
        writer.finish().unwrap();
        let idx = dir.join("t.idx");
        assert_eq!(rebuild_index(&rec, &idx).unwrap(), 4);
        let size = std::fs::metadata(&rec).unwrap().len();
        assert_eq!(
            RecordIndex::read(&idx, size).unwrap().entries(),
            expected.as_slice()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
