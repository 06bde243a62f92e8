//! MXNet RecordIO framing (dmlc-core `recordio.cc`): reading and writing logical records.
//!
//! A record is `u32 magic`, `u32 lrec = cflag << 29 | length`, the payload and zero padding to a
//! multiple of 4, all little-endian. A payload holding the magic word at a 4-byte-aligned offset
//! is split there and the word dropped: the parts carry `cflag` 1 (first), 2 (middle) and 3
//! (last), and the reader re-inserts the word when joining them.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};

/// The magic word that opens every record part.
pub const RECORD_MAGIC: u32 = 0xced7_230a;

/// The largest payload one part (and, as dmlc-core requires, one record) may hold: 29 bits.
pub const MAX_RECORD_LEN: usize = (1 << 29) - 1;

/// Bytes that can be read at any offset through a shared reference, so that several loader
/// threads read one file without a lock.
pub trait ByteSource {
    /// Total length in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` with the bytes starting at `offset`.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl ByteSource for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).ok().filter(|&s| s <= self.len());
        match start.and_then(|s| self.get(s..s + buf.len())) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

impl ByteSource for Vec<u8> {
    fn size(&self) -> u64 {
        self.as_slice().size()
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.as_slice().read_exact_at(offset, buf)
    }
}

/// A file opened for positioned reads, with its length taken once at open.
#[derive(Debug)]
pub struct RecordFile {
    file: File,
    size: u64,
}

impl RecordFile {
    /// Opens `path` for reading.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let size = file.metadata().map_err(|e| DataError::io(path, e))?.len();
        Ok(Self { file, size })
    }
}

impl ByteSource for RecordFile {
    fn size(&self) -> u64 {
        self.size
    }

    #[cfg(unix)]
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }

    #[cfg(windows)]
    fn read_exact_at(&self, mut offset: u64, mut buf: &mut [u8]) -> std::io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            match self.file.seek_read(buf, offset)? {
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    #[cfg(not(any(unix, windows)))]
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        // No positioned read here: seek and read through a cloned handle. Not safe to share
        // between threads on such platforms, which the loader does not target.
        use std::io::{Read, Seek, SeekFrom};
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

fn align4(len: u64) -> u64 {
    (len + 3) & !3
}

/// Reads the logical record whose first part starts at `offset`, joining continuation parts.
///
/// Returns the payload and the offset of the next record. Every length is checked against the
/// end of the source before anything is allocated; `path` only names the source in errors.
pub fn read_record<S: ByteSource + ?Sized>(
    src: &S,
    path: &Path,
    offset: u64,
) -> Result<(Vec<u8>, u64)> {
    let size = src.size();
    let mut payload = Vec::new();
    let mut pos = offset;
    let mut part = 0usize;
    loop {
        let Some(body_start) = pos.checked_add(8).filter(|&end| end <= size) else {
            let what = if part == 0 {
                "record header"
            } else {
                "continuation part header"
            };
            return Err(DataError::corrupt(
                path,
                pos,
                format!(
                    "truncated: the 8-byte {what} runs past the end of the file ({size} bytes)"
                ),
            ));
        };
        let mut header = [0u8; 8];
        src.read_exact_at(pos, &mut header)
            .map_err(|e| DataError::io(path, e))?;
        let magic = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        if magic != RECORD_MAGIC {
            return Err(DataError::corrupt(
                path,
                pos,
                format!("bad magic word {magic:#010x}, expected {RECORD_MAGIC:#010x}"),
            ));
        }
        let lrec = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        let cflag = lrec >> 29;
        let len = u64::from(lrec & ((1 << 29) - 1));
        let expected_ok = if part == 0 {
            cflag <= 1
        } else {
            cflag == 2 || cflag == 3
        };
        if !expected_ok {
            let expected = if part == 0 {
                "0 or 1 (a record start)"
            } else {
                "2 or 3"
            };
            return Err(DataError::corrupt(
                path,
                pos,
                format!("part {part} has continuation flag {cflag}, expected {expected}"),
            ));
        }
        if body_start + len > size {
            return Err(DataError::corrupt(
                path,
                pos,
                format!(
                    "truncated: the part announces {len} bytes but the file ends {} bytes later",
                    size - body_start
                ),
            ));
        }
        if part > 0 {
            payload.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
        }
        let start = payload.len();
        payload.resize(start + len as usize, 0);
        src.read_exact_at(body_start, &mut payload[start..])
            .map_err(|e| DataError::io(path, e))?;
        // A missing final padding is tolerated: the payload is complete without it.
        pos = (body_start + align4(len)).min(size);
        part += 1;
        if cflag == 0 || cflag == 3 {
            return Ok((payload, pos));
        }
    }
}

/// Offsets of every record in the source, found by reading it from the start.
pub fn scan_records<S: ByteSource + ?Sized>(src: &S, path: &Path) -> Result<Vec<u64>> {
    let mut offsets = Vec::new();
    let mut pos = 0;
    while pos < src.size() {
        offsets.push(pos);
        pos = read_record(src, path, pos)?.1;
    }
    Ok(offsets)
}

/// Writes records in MXNet's framing to any byte sink, counting the bytes written.
#[derive(Debug)]
pub struct RecordWriter<W: Write> {
    inner: W,
    position: u64,
    path: PathBuf,
}

impl<W: Write> RecordWriter<W> {
    /// Wraps `inner`, which is at byte 0 of the output; `path` names it in errors.
    pub fn new(inner: W, path: impl Into<PathBuf>) -> Self {
        Self {
            inner,
            position: 0,
            path: path.into(),
        }
    }

    /// The byte offset the next record will start at.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Writes one logical record, splitting it where the payload holds the magic word at an
    /// aligned offset, and returns the offset of its first part.
    pub fn write_record(&mut self, payload: &[u8]) -> Result<u64> {
        if payload.len() > MAX_RECORD_LEN {
            return Err(DataError::BadWrite {
                path: self.path.clone(),
                reason: format!(
                    "a record holds at most {MAX_RECORD_LEN} bytes, got {}",
                    payload.len()
                ),
            });
        }
        let offset = self.position;
        let magic = RECORD_MAGIC.to_le_bytes();
        let mut part_start = 0;
        let aligned_end = payload.len() / 4 * 4;
        for i in (0..aligned_end).step_by(4) {
            if payload[i..i + 4] == magic {
                let cflag = if part_start == 0 { 1 } else { 2 };
                self.write_part(cflag, &payload[part_start..i])?;
                part_start = i + 4;
            }
        }
        let cflag = if part_start == 0 { 0 } else { 3 };
        self.write_part(cflag, &payload[part_start..])?;
        Ok(offset)
    }

    fn write_part(&mut self, cflag: u32, data: &[u8]) -> Result<()> {
        let lrec = cflag << 29 | data.len() as u32;
        let pad = (align4(data.len() as u64) - data.len() as u64) as usize;
        let mut out = Vec::with_capacity(8 + data.len() + pad);
        out.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
        out.extend_from_slice(&lrec.to_le_bytes());
        out.extend_from_slice(data);
        out.resize(out.len() + pad, 0);
        self.inner
            .write_all(&out)
            .map_err(|e| DataError::io(&self.path, e))?;
        self.position += out.len() as u64;
        Ok(())
    }

    /// Flushes and returns the sink.
    pub fn finish(mut self) -> Result<W> {
        self.inner
            .flush()
            .map_err(|e| DataError::io(&self.path, e))?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> &'static Path {
        Path::new("mem.rec")
    }

    fn write(records: &[&[u8]]) -> Vec<u8> {
        let mut writer = RecordWriter::new(Vec::new(), "mem.rec");
        for record in records {
            writer.write_record(record).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn single_record_matches_hand_built_bytes() {
        let bytes = write(&[b"abcde"]);
        let expected = [
            0x0a, 0x23, 0xd7, 0xce, 5, 0, 0, 0, b'a', b'b', b'c', b'd', b'e', 0, 0, 0,
        ];
        assert_eq!(bytes, expected);
        assert_eq!(
            read_record(&expected[..], path(), 0).unwrap(),
            (b"abcde".to_vec(), 16)
        );
    }

    #[test]
    fn magic_in_payload_splits_into_flagged_parts() {
        let magic = RECORD_MAGIC.to_le_bytes();
        let payload = [b"abcd".as_slice(), &magic, b"efgh", &magic, b"ij"].concat();
        let bytes = write(&[&payload]);
        // Parts: cflag 1 "abcd", cflag 2 "efgh", cflag 3 "ij" + 2 bytes of padding.
        let mut expected = Vec::new();
        for (cflag, data) in [(1u32, b"abcd".as_slice()), (2, b"efgh"), (3, b"ij")] {
            expected.extend_from_slice(&magic);
            expected.extend_from_slice(&(cflag << 29 | data.len() as u32).to_le_bytes());
            expected.extend_from_slice(data);
        }
        expected.extend_from_slice(&[0, 0]);
        assert_eq!(bytes, expected);
        let (read, next) = read_record(&bytes, path(), 0).unwrap();
        assert_eq!(read, payload);
        assert_eq!(next, bytes.len() as u64);
    }

    #[test]
    fn magic_at_the_very_start_and_end_round_trips() {
        let magic = RECORD_MAGIC.to_le_bytes();
        for payload in [
            magic.to_vec(),
            [magic, magic].concat(),
            [b"xy".as_slice(), &magic].concat(),
        ] {
            let bytes = write(&[&payload, b"next"]);
            let offsets = scan_records(&bytes, path()).unwrap();
            assert_eq!(offsets.len(), 2);
            assert_eq!(read_record(&bytes, path(), offsets[0]).unwrap().0, payload);
            assert_eq!(read_record(&bytes, path(), offsets[1]).unwrap().0, b"next");
        }
    }

    #[test]
    fn truncation_and_bad_magic_name_the_offset() {
        let bytes = write(&[b"first", b"second record"]);
        let second = 16u64;
        let cut = &bytes[..bytes.len() - 6];
        let err = read_record(cut, path(), second).unwrap_err().to_string();
        assert!(err.contains("mem.rec") && err.contains("byte 16") && err.contains("truncated"));
        let err = read_record(&bytes[..20], path(), second)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("byte 16") && err.contains("8-byte record header"),
            "{err}"
        );
        let err = read_record(&bytes, path(), 4).unwrap_err().to_string();
        assert!(err.contains("byte 4") && err.contains("bad magic"), "{err}");
        assert!(scan_records(cut, path()).is_err());
    }

    #[test]
    fn continuation_flags_out_of_order_are_rejected() {
        let mut bytes = write(&[b"abcd"]);
        bytes[7] = 2 << 5; // cflag 2 on a record start
        let err = read_record(&bytes, path(), 0).unwrap_err().to_string();
        assert!(err.contains("continuation flag 2"), "{err}");
        bytes[7] = 1 << 5; // cflag 1, then the file ends
        let err = read_record(&bytes, path(), 0).unwrap_err().to_string();
        assert!(
            err.contains("byte 12") && err.contains("continuation part header"),
            "{err}"
        );
    }

    #[test]
    fn a_huge_length_is_refused_before_allocating() {
        let mut bytes = RECORD_MAGIC.to_le_bytes().to_vec();
        bytes.extend_from_slice(&((1u32 << 29) - 1).to_le_bytes());
        let err = read_record(&bytes, path(), 0).unwrap_err().to_string();
        assert!(err.contains("announces 536870911 bytes"), "{err}");
    }
}
