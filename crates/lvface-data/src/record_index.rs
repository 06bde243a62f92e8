//! [`RecordIndex`]: the `.idx` companion of a `.rec` file, read, written and rebuilt.
//!
//! The index is held as compactly as the keys allow: insightface's keys run `0..K` with no hole,
//! so the offsets are kept in one array indexed by key, 8 bytes a record (WebFace42M's 42.5 M
//! records take 340 MB, not the 1.4 GB a hash map of text entries took). Keys that are too sparse
//! for an array (a plain im2rec file with arbitrary ids) are kept as sorted pairs, 16 bytes a
//! record.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::error::{DataError, Result};
use crate::ir_header::IrHeader;
use crate::record_io::{read_record, scan_records, ByteSource, RecordFile};

/// Marks a key without a record in a dense index (no real offset can be `u64::MAX`).
pub(crate) const NO_RECORD: u64 = u64::MAX;

/// Keys and byte offsets of the records of a `.rec` file.
///
/// The `.idx` format is text, one `key\toffset` line per record; insightface writes key 0 (the
/// header record) last, so lines are not sorted by key. The index keeps offsets by key:
/// [`RecordIndex::entries`] goes by ascending key, [`RecordIndex::write`] by offset.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordIndex {
    keys: Keys,
    len: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Keys {
    /// `offsets[i]` is the offset of key `first + i`, or [`NO_RECORD`].
    Dense { first: u64, offsets: Vec<u64> },
    /// `(key, offset)` sorted by key.
    Sparse(Vec<(u64, u64)>),
}

impl Default for RecordIndex {
    fn default() -> Self {
        Self {
            keys: Keys::Sparse(Vec::new()),
            len: 0,
        }
    }
}

impl RecordIndex {
    /// An index of `(key, offset)` pairs in any order. Keys must be distinct.
    pub fn from_entries(entries: Vec<(u64, u64)>) -> std::result::Result<Self, String> {
        Self::build(entries).map_err(|(key, _)| format!("key {key} appears twice"))
    }

    /// Builds the index; on a repeated key, returns it with the position of its second entry.
    fn build(mut entries: Vec<(u64, u64)>) -> std::result::Result<Self, (u64, usize)> {
        let len = entries.len();
        let (Some(first), Some(last)) = (
            entries.iter().map(|e| e.0).min(),
            entries.iter().map(|e| e.0).max(),
        ) else {
            return Ok(Self::default());
        };
        // An array wins while at least half of its slots hold a record. The span is compared
        // as `last - first`: keys 0 and u64::MAX span 2^64 slots, one more than a u64 holds.
        if last - first < 2 * len as u64 {
            let mut offsets = vec![NO_RECORD; (last - first) as usize + 1];
            for (i, &(key, offset)) in entries.iter().enumerate() {
                let slot = &mut offsets[(key - first) as usize];
                if *slot != NO_RECORD {
                    return Err((key, i));
                }
                *slot = offset;
            }
            return Ok(Self {
                keys: Keys::Dense { first, offsets },
                len,
            });
        }
        entries.sort_unstable_by_key(|e| e.0);
        if let Some(pair) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err((pair[0].0, len));
        }
        Ok(Self {
            keys: Keys::Sparse(entries),
            len,
        })
    }

    /// A dense index from its parts (the binary cache), checked: every offset below `rec_size`.
    pub(crate) fn from_dense(
        first: u64,
        offsets: Vec<u64>,
        rec_size: u64,
    ) -> std::result::Result<Self, String> {
        // Keys are `first + i`; each must be a u64, or every method that names a key overflows.
        if (offsets.len() as u64).saturating_sub(1) > u64::MAX - first {
            return Err(format!(
                "{} slots from key {first} run past the largest key, {}",
                offsets.len(),
                u64::MAX
            ));
        }
        let mut len = 0;
        for (i, &offset) in offsets.iter().enumerate() {
            if offset == NO_RECORD {
                continue;
            }
            if offset >= rec_size {
                return Err(format!(
                    "key {} points at byte {offset}, past the end of the .rec file",
                    first + i as u64
                ));
            }
            len += 1;
        }
        Ok(Self {
            keys: Keys::Dense { first, offsets },
            len,
        })
    }

    /// The first key and the offsets by key, when the index is dense.
    pub(crate) fn dense_parts(&self) -> Option<(u64, &[u64])> {
        match &self.keys {
            Keys::Dense { first, offsets } => Some((*first, offsets)),
            Keys::Sparse(_) => None,
        }
    }

    /// Reads `idx_path`, checking each offset against `rec_size`, the length of the `.rec` file.
    pub fn read(idx_path: &Path, rec_size: u64) -> Result<Self> {
        let file = std::fs::File::open(idx_path).map_err(|e| DataError::io(idx_path, e))?;
        Self::from_reader(BufReader::with_capacity(1 << 20, file), idx_path, rec_size)
    }

    /// Reads `.idx` text from `reader` as [`RecordIndex::read`] does; `idx_path` names it in
    /// errors.
    pub fn from_reader(mut reader: impl BufRead, idx_path: &Path, rec_size: u64) -> Result<Self> {
        let bad = |line: usize, reason: String| DataError::BadIndex {
            path: idx_path.to_path_buf(),
            line,
            reason,
        };
        let mut entries = Vec::new();
        let mut line_numbers_of_blank = Vec::new();
        let mut line = Vec::with_capacity(64);
        let mut line_no = 0;
        loop {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| DataError::io(idx_path, e))?;
            if read == 0 {
                break;
            }
            line_no += 1;
            let text = std::str::from_utf8(&line)
                .map_err(|_| bad(line_no, "not UTF-8 text".into()))?
                .trim();
            if text.is_empty() {
                line_numbers_of_blank.push(line_no);
                continue;
            }
            let (key, offset) = parse_line(text).map_err(|reason| bad(line_no, reason))?;
            if offset >= rec_size {
                return Err(bad(
                    line_no,
                    format!(
                        "key {key} points at byte {offset}, past the end of the .rec file \
                         ({rec_size} bytes)"
                    ),
                ));
            }
            entries.push((key, offset));
        }
        Self::build(entries).map_err(|(key, position)| {
            // The position counts entries; blank lines before it shift the line number.
            let line = position + 1 + line_numbers_of_blank.partition_point(|&b| b <= position);
            bad(line, format!("key {key} appears twice"))
        })
    }

    /// Writes the index as `key\toffset` lines in file order (by offset), the order in which
    /// insightface, im2rec and this crate write them.
    pub fn write(&self, idx_path: &Path) -> Result<()> {
        let file = std::fs::File::create(idx_path).map_err(|e| DataError::io(idx_path, e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut by_offset: Vec<(u64, u64)> = self.entries().collect();
        by_offset.sort_unstable_by_key(|&(_, offset)| offset);
        for (key, offset) in by_offset {
            writeln!(out, "{key}\t{offset}").map_err(|e| DataError::io(idx_path, e))?;
        }
        out.flush().map_err(|e| DataError::io(idx_path, e))
    }

    /// Builds an index by reading every record of `src` from the start.
    ///
    /// Keys are the records' IRHeader ids when every record has a header and the ids are
    /// distinct (insightface and im2rec write the key as the id, and insightface writes record 0
    /// last); otherwise keys count records in file order, as MXNet's `rec2idx.py` does.
    pub fn scan<S: ByteSource + ?Sized>(src: &S, path: &Path) -> Result<Self> {
        let offsets = scan_records(src, path)?;
        let mut ids = Vec::with_capacity(offsets.len());
        for &offset in &offsets {
            let payload = read_record(src, path, offset)?.0;
            match IrHeader::parse(&payload) {
                Ok((header, _)) => ids.push(header.id),
                Err(_) => break,
            }
        }
        if ids.len() == offsets.len() {
            if let Ok(index) = Self::build(ids.into_iter().zip(offsets.iter().copied()).collect()) {
                return Ok(index);
            }
        }
        let counted = (0..offsets.len() as u64).zip(offsets).collect();
        Ok(Self::build(counted).expect("keys are distinct by construction"))
    }

    /// The `(key, offset)` pairs by ascending key.
    pub fn entries(&self) -> Box<dyn Iterator<Item = (u64, u64)> + '_> {
        match &self.keys {
            Keys::Dense { first, offsets } => Box::new(
                offsets
                    .iter()
                    .enumerate()
                    .filter(|(_, &o)| o != NO_RECORD)
                    .map(move |(i, &o)| (first + i as u64, o)),
            ),
            Keys::Sparse(pairs) => Box::new(pairs.iter().copied()),
        }
    }

    /// The byte offset of `key`, if indexed.
    pub fn offset(&self, key: u64) -> Option<u64> {
        match &self.keys {
            Keys::Dense { first, offsets } => key
                .checked_sub(*first)
                .and_then(|i| offsets.get(usize::try_from(i).ok()?))
                .copied()
                .filter(|&o| o != NO_RECORD),
            Keys::Sparse(pairs) => pairs
                .binary_search_by_key(&key, |e| e.0)
                .ok()
                .map(|i| pairs[i].1),
        }
    }

    /// Whether every key of `keys` is indexed; the first missing one otherwise.
    pub fn first_missing(&self, keys: std::ops::Range<u64>) -> Option<u64> {
        keys.into_iter().find(|&k| self.offset(k).is_none())
    }

    /// The largest key, if any.
    pub fn last_key(&self) -> Option<u64> {
        match &self.keys {
            Keys::Dense { first, offsets } => offsets
                .iter()
                .rposition(|&o| o != NO_RECORD)
                .map(|i| first + i as u64),
            Keys::Sparse(pairs) => pairs.last().map(|e| e.0),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory the index holds (its arrays' capacity).
    pub fn heap_bytes(&self) -> usize {
        match &self.keys {
            Keys::Dense { offsets, .. } => offsets.capacity() * 8,
            Keys::Sparse(pairs) => pairs.capacity() * 16,
        }
    }
}

/// Parses `key<TAB>offset`.
fn parse_line(text: &str) -> std::result::Result<(u64, u64), String> {
    let mut fields = text.split('\t');
    let (Some(key), Some(offset), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(format!("expected `key<TAB>offset`, got {text:?}"));
    };
    let key = key
        .trim()
        .parse()
        .map_err(|_| format!("key {key:?} is not a non-negative integer"))?;
    let offset = offset
        .trim()
        .parse()
        .map_err(|_| format!("offset {offset:?} is not a non-negative integer"))?;
    Ok((key, offset))
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

    /// Inputs the `record_index` fuzz target reaches: the span of keys 0 and u64::MAX is one more
    /// than a u64 holds, and the dense layout's slot count overflowed.
    #[test]
    fn the_widest_key_span_and_dense_runs_past_the_largest_key() {
        let index = RecordIndex::from_entries(vec![(u64::MAX, 2), (0, 1)]).unwrap();
        assert_eq!(index.len(), 2);
        assert_eq!(index.offset(0), Some(1));
        assert_eq!(index.offset(u64::MAX), Some(2));
        assert_eq!(index.last_key(), Some(u64::MAX));
        let err = RecordIndex::from_dense(u64::MAX, vec![0, 0], 10).unwrap_err();
        assert!(err.contains("run past the largest key"), "{err}");
        assert!(RecordIndex::from_dense(u64::MAX, vec![0], 10).is_ok());
    }

    #[test]
    fn reads_lines_with_offsets_checked() {
        let dir = scratch("read");
        let idx = dir.join("a.idx");
        std::fs::write(&idx, "1\t0\n2\t16\n0\t40\n").unwrap();
        let index = RecordIndex::read(&idx, 48).unwrap();
        assert_eq!(
            index.entries().collect::<Vec<_>>(),
            vec![(0, 40), (1, 0), (2, 16)]
        );
        assert_eq!(index.offset(0), Some(40));
        assert_eq!(index.offset(3), None);
        assert_eq!(index.last_key(), Some(2));

        let err = RecordIndex::read(&idx, 40).unwrap_err().to_string();
        assert!(
            err.contains("a.idx:3") && err.contains("past the end"),
            "{err}"
        );
        std::fs::write(&idx, "1\t0\nx\t16\n").unwrap();
        let err = RecordIndex::read(&idx, 48).unwrap_err().to_string();
        assert!(err.contains("a.idx:2") && err.contains("\"x\""), "{err}");
        // The repeated key is on line 4: the blank line before it counts.
        std::fs::write(&idx, "1\t0\n\n2\t8\n1\t16\n").unwrap();
        let err = RecordIndex::read(&idx, 48).unwrap_err().to_string();
        assert!(err.contains("a.idx:4") && err.contains("twice"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn contiguous_keys_take_eight_bytes_a_record_and_sparse_keys_sixteen() {
        let dense = RecordIndex::from_entries((0..1000).map(|k| (k, 4 * k)).collect()).unwrap();
        assert_eq!(dense.heap_bytes(), 8 * 1000);
        assert!(dense.dense_parts().is_some());
        assert_eq!(dense.offset(999), Some(3996));
        assert_eq!(dense.first_missing(0..1000), None);
        assert_eq!(dense.first_missing(0..1001), Some(1000));

        let keys = [5u64, 1 << 40, 7, 1 << 50];
        let sparse =
            RecordIndex::from_entries(keys.iter().map(|&k| (k, k % 97)).collect()).unwrap();
        assert!(sparse.dense_parts().is_none());
        assert_eq!(sparse.heap_bytes(), 16 * 4);
        for k in keys {
            assert_eq!(sparse.offset(k), Some(k % 97));
        }
        assert_eq!(sparse.offset(6), None);
        assert_eq!(sparse.last_key(), Some(1 << 50));
        assert!(RecordIndex::from_entries(vec![(1 << 40, 0), (3, 1), (1 << 40, 2)]).is_err());
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
        assert_eq!(
            index.entries().collect::<Vec<_>>(),
            vec![(0, o0), (1, o1), (2, o2)]
        );

        let mut writer = RecordWriter::new(Vec::new(), "mem.rec");
        let a = writer
            .write_record(&IrHeader::scalar(0.0, 5).pack(b"a"))
            .unwrap();
        let b = writer
            .write_record(&IrHeader::scalar(0.0, 5).pack(b"b"))
            .unwrap();
        let bytes = writer.finish().unwrap();
        let index = RecordIndex::scan(&bytes, Path::new("mem.rec")).unwrap();
        assert_eq!(index.entries().collect::<Vec<_>>(), vec![(0, a), (1, b)]);
    }

    #[test]
    fn rebuild_writes_the_index_the_writer_would() {
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
        expected.sort();
        let idx = dir.join("t.idx");
        assert_eq!(rebuild_index(&rec, &idx).unwrap(), 4);
        let size = std::fs::metadata(&rec).unwrap().len();
        let read = RecordIndex::read(&idx, size).unwrap();
        assert_eq!(read.entries().collect::<Vec<_>>(), expected);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
