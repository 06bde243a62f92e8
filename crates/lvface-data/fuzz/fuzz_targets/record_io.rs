//! Arbitrary bytes as a `.rec` file: scanning, indexing and reading every record must return
//! records or errors, never panic or allocate past the input.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lvface_data::record_io::{read_record, scan_records};
use lvface_data::{IrHeader, RecordIndex};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.rec");
    let bytes = data.to_vec();
    let _ = scan_records(&bytes, path);
    let _ = RecordIndex::scan(&bytes, path);
    let mut offset = 0u64;
    while let Ok((payload, next)) = read_record(&bytes, path, offset) {
        assert!(payload.len() <= data.len());
        let _ = IrHeader::parse(&payload);
        if next <= offset {
            break;
        }
        offset = next;
    }
    // Reads at unaligned offsets too.
    for start in [1u64, 3, 7] {
        let _ = read_record(&bytes, path, start);
    }
});
