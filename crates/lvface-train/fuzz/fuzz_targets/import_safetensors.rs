//! Arbitrary bytes as a `.safetensors` backbone, through lvface's import (burn-store's reader, then
//! every key and shape checked): an error naming the file, never a panic or an allocation the
//! file's size does not justify.

#![no_main]

mod weights;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weights::run(data, "safetensors"));
