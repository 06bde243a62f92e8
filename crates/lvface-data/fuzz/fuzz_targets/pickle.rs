//! Arbitrary bytes as a `.bin` pickle: parsing must return plain data or an error, never panic.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lvface_data::pickle::{read_pickle, write_pickle};
use lvface_data::BinPairs;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.bin");
    if let Ok(value) = read_pickle(data, path) {
        // Whatever was read writes and reads back to the same value.
        let again = read_pickle(&write_pickle(&value), path).expect("own output should parse");
        assert_eq!(format!("{value:?}"), format!("{again:?}"));
    }
    let _ = BinPairs::from_bytes(data, path);
});
