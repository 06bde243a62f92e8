//! A binary copy of a dense `.idx` (`train.lvidx` beside `train.idx`), so that opening a set of
//! tens of millions of images reads one array instead of parsing text (WebFace42M's `.idx` is
//! about 800 MB of text).
//!
//! Layout, little-endian: the magic `LVFIDX01`; the `.idx` file's length and modification time
//! (nanoseconds since the Unix epoch) and the `.rec` file's length, which tie the copy to the
//! files it was made from; the first key and the number of slots; then one `u64` offset a slot,
//! `u64::MAX` for a key without a record. A copy whose stamp differs, or that is malformed in
//! any way, is ignored and the text is read again: the `.idx` stays the source of truth.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::record_index::RecordIndex;

const MAGIC: &[u8; 8] = b"LVFIDX01";
const HEADER_LEN: u64 = 8 + 5 * 8;

/// Where the index of a [`crate::RecordDataset`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOrigin {
    /// The binary copy beside the `.idx` was current and was read.
    Cache(PathBuf),
    /// The `.idx` text was parsed; `cached` says whether a binary copy was written for the next
    /// open (it is not when the folder is read-only or the keys are too sparse for an array).
    Text {
        /// Whether `train.lvidx` was written.
        cached: bool,
    },
    /// There was no `.idx`: the `.rec` file was scanned.
    Scan,
}

/// The binary copy's path for `idx_path`: `train.idx` gives `train.lvidx`.
pub fn cache_path(idx_path: &Path) -> PathBuf {
    idx_path.with_extension("lvidx")
}

/// What ties a copy to its `.idx` and `.rec`.
fn stamp(idx_path: &Path, rec_size: u64) -> Option<[u64; 3]> {
    let meta = std::fs::metadata(idx_path).ok()?;
    let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some([meta.len(), mtime.as_nanos() as u64, rec_size])
}

fn read_u64(reader: &mut impl Read) -> Option<u64> {
    let mut word = [0u8; 8];
    reader.read_exact(&mut word).ok()?;
    Some(u64::from_le_bytes(word))
}

/// Reads the copy of `idx_path` if it is current and well-formed.
pub(crate) fn load(idx_path: &Path, rec_size: u64) -> Option<RecordIndex> {
    let expected = stamp(idx_path, rec_size)?;
    let file = std::fs::File::open(cache_path(idx_path)).ok()?;
    let file_len = file.metadata().ok()?.len();
    decode(
        BufReader::with_capacity(1 << 20, file),
        file_len,
        expected,
        rec_size,
    )
}

/// The index held by the bytes of a copy, if they are well-formed and carry `expected` as their
/// stamp. Public for the fuzz targets, which hand it bytes rather than files.
#[doc(hidden)]
pub fn decode_cache(bytes: &[u8], expected: [u64; 3], rec_size: u64) -> Option<RecordIndex> {
    decode(bytes, bytes.len() as u64, expected, rec_size)
}

fn decode(
    mut reader: impl Read,
    file_len: u64,
    expected: [u64; 3],
    rec_size: u64,
) -> Option<RecordIndex> {
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).ok()?;
    if &magic != MAGIC {
        return None;
    }
    for want in expected {
        if read_u64(&mut reader)? != want {
            return None;
        }
    }
    let first = read_u64(&mut reader)?;
    let slots = read_u64(&mut reader)?;
    // The slot count is checked against the file's length before anything is allocated.
    if slots.checked_mul(8)?.checked_add(HEADER_LEN)? != file_len {
        return None;
    }
    let mut offsets = vec![0u64; usize::try_from(slots).ok()?];
    let mut bytes = vec![0u8; 1 << 20];
    for chunk in offsets.chunks_mut(bytes.len() / 8) {
        let raw = &mut bytes[..chunk.len() * 8];
        reader.read_exact(raw).ok()?;
        for (offset, word) in chunk.iter_mut().zip(raw.chunks_exact(8)) {
            *offset = u64::from_le_bytes(word.try_into().expect("8-byte chunks"));
        }
    }
    RecordIndex::from_dense(first, offsets, rec_size).ok()
}

/// Writes the copy of a dense `index` of `idx_path`, through a temporary file renamed into place
/// so that a reader never sees half a copy. Returns whether a copy was written.
pub(crate) fn store(idx_path: &Path, rec_size: u64, index: &RecordIndex) -> bool {
    let (Some((first, offsets)), Some(stamp)) = (index.dense_parts(), stamp(idx_path, rec_size))
    else {
        return false;
    };
    let path = cache_path(idx_path);
    let tmp = path.with_extension(format!("lvidx.tmp{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        out.write_all(MAGIC)?;
        for word in stamp.into_iter().chain([first, offsets.len() as u64]) {
            out.write_all(&word.to_le_bytes())?;
        }
        for offset in offsets {
            out.write_all(&offset.to_le_bytes())?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_read_back_and_ignored_once_stale_or_damaged() {
        let dir = std::env::temp_dir().join(format!("lvface-data-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let idx = dir.join("train.idx");
        std::fs::write(&idx, "0\t40\n1\t0\n3\t16\n").unwrap();
        let index = RecordIndex::read(&idx, 48).unwrap();
        assert!(load(&idx, 48).is_none(), "no copy yet");
        assert!(store(&idx, 48, &index));
        assert_eq!(load(&idx, 48), Some(index.clone()));
        // Another .rec length: the copy belongs to other files.
        assert!(load(&idx, 52).is_none());
        // A truncated copy, and a copy whose slot count disagrees with its length.
        let bytes = std::fs::read(cache_path(&idx)).unwrap();
        std::fs::write(cache_path(&idx), &bytes[..bytes.len() - 3]).unwrap();
        assert!(load(&idx, 48).is_none());
        let mut lying = bytes.clone();
        lying[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(cache_path(&idx), &lying).unwrap();
        assert!(load(&idx, 48).is_none());
        // An offset past the end of the .rec file.
        let mut past = bytes.clone();
        past[48..56].copy_from_slice(&100u64.to_le_bytes());
        std::fs::write(cache_path(&idx), &past).unwrap();
        assert!(load(&idx, 48).is_none());
        // A rewritten .idx (other length) makes the copy stale.
        std::fs::write(cache_path(&idx), &bytes).unwrap();
        std::fs::write(&idx, "0\t40\n1\t0\n2\t16\n\n").unwrap();
        assert!(load(&idx, 48).is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
