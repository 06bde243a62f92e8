//! Arbitrary bytes as an `.npy` file: parsing returns an array or an error, never panics or
//! allocates past the input, and an array taken as embeddings is checked, not trusted.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lvface_eval::NpyArray;

fuzz_target!(|data: &[u8]| {
    let Ok(array) = NpyArray::parse(data, Path::new("fuzz.npy")) else {
        return;
    };
    assert!(array.values.len() * array.dtype.size() <= data.len());
    assert_eq!(array.values.len(), array.shape.iter().product::<usize>());
    let rows = array.shape.first().copied().unwrap_or(0);
    let _ = array.clone().into_embeddings();
    let _ = array.clone().into_pair_embeddings(rows / 2, false);
    let _ = array.into_pair_embeddings(rows / 4, true);
});
