//! Arbitrary bytes as a `train.lvidx` binary index: decoding gives an index or `None`, never
//! panics or allocates past the input.
//!
//! The stamp a real copy must match (the `.idx` length and time, the `.rec` length) is taken
//! from the input itself, so that the fuzzer gets past it to the slots.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lvface_data::decode_cache;

fuzz_target!(|data: &[u8]| {
    let word = |i: usize| {
        data.get(8 + 8 * i..16 + 8 * i)
            .map_or(0, |w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
    };
    let stamp = [word(0), word(1), word(2)];
    let Some(index) = decode_cache(data, stamp, stamp[2]) else {
        return;
    };
    assert!(index.heap_bytes() <= data.len());
    let mut count = 0;
    for (key, offset) in index.entries() {
        assert!(offset < stamp[2]);
        assert_eq!(index.offset(key), Some(offset));
        count += 1;
    }
    assert_eq!(count, index.len());
    let _ = index.last_key();
});
