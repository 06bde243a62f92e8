//! Seeded random damage to valid `.rec` and pickle bytes: every read returns a value or an error
//! (a panic fails the test).

use std::path::Path;

use lvface_data::pickle::{read_pickle, write_pickle};
use lvface_data::record_io::{read_record, RecordWriter, RECORD_MAGIC};
use lvface_data::{BinPairs, IrHeader, RecordIndex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn mutate(rng: &mut ChaCha8Rng, valid: &[u8]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..4) {
            0 if !bytes.is_empty() => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            1 => bytes.truncate(rng.random_range(0..=bytes.len())),
            2 if !bytes.is_empty() => {
                // A large little-endian length somewhere.
                let at = rng.random_range(0..bytes.len());
                let end = (at + 4).min(bytes.len());
                bytes[at..end].fill(0xff);
            }
            _ => {
                let at = rng.random_range(0..=bytes.len());
                bytes.splice(at..at, RECORD_MAGIC.to_le_bytes());
            }
        }
    }
    bytes
}

#[test]
fn damaged_records_never_panic() {
    let mut writer = RecordWriter::new(Vec::new(), "m.rec");
    let magic = RECORD_MAGIC.to_le_bytes();
    writer
        .write_record(&IrHeader::scalar(1.0, 1).pack(&[b"abcd".as_slice(), &magic, b"ef"].concat()))
        .unwrap();
    writer
        .write_record(&IrHeader::vector(vec![1.0, 2.0], 2).pack(b""))
        .unwrap();
    writer
        .write_record(&IrHeader::vector(vec![2.0, 3.0], 0).pack(b""))
        .unwrap();
    let valid = writer.finish().unwrap();
    let path = Path::new("m.rec");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut errors = 0;
    for _ in 0..3000 {
        let bytes = mutate(&mut rng, &valid);
        errors += usize::from(RecordIndex::scan(&bytes, path).is_err());
        for offset in [0u64, 4, 40] {
            if let Ok((payload, next)) = read_record(&bytes, path, offset) {
                assert!(payload.len() <= bytes.len() && next <= bytes.len() as u64);
                let _ = IrHeader::parse(&payload);
            }
        }
    }
    assert!(errors > 1000, "most damage is detected ({errors} of 3000)");
}

#[test]
fn damaged_pickles_never_panic() {
    let set = BinPairs {
        images: vec![vec![1; 300], vec![2; 3]],
        issame: vec![false],
    };
    let py2 = b"\x80\x02]q\x01(U\x02abq\x02U\x02cdq\x03e]q\x04\x88a\x86q\x05.".to_vec();
    let path = Path::new("m.bin");
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for valid in [set.to_bytes(), py2] {
        for _ in 0..3000 {
            let bytes = mutate(&mut rng, &valid);
            if let Ok(value) = read_pickle(&bytes, path) {
                let again = read_pickle(&write_pickle(&value), path).unwrap();
                assert_eq!(again, value);
            }
            if let Ok(read) = BinPairs::from_bytes(&bytes, path) {
                assert_eq!(read.images.len(), 2 * read.len());
            }
        }
    }
}
