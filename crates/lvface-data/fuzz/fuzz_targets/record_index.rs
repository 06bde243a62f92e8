//! Arbitrary bytes as `.idx` text: reading returns an index or an error naming the line, never
//! panics or allocates past what the keys ask for, and what reads writes back the same.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lvface_data::RecordIndex;

/// Large enough that offsets in the text are rarely past the end, so reading goes on.
const REC_SIZE: u64 = 1 << 40;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.idx");
    let Ok(index) = RecordIndex::from_reader(data, path, REC_SIZE) else {
        return;
    };
    let entries: Vec<(u64, u64)> = index.entries().collect();
    assert_eq!(entries.len(), index.len());
    assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
    for &(key, offset) in &entries {
        assert_eq!(index.offset(key), Some(offset));
    }
    assert_eq!(index.last_key(), entries.last().map(|e| e.0));
    if let Some(&(first, _)) = entries.first() {
        let _ = index.first_missing(first..first.saturating_add(64));
    }
    let text: String = entries
        .iter()
        .map(|(key, offset)| format!("{key}\t{offset}\n"))
        .collect();
    let again = RecordIndex::from_reader(text.as_bytes(), path, REC_SIZE)
        .expect("the index's own lines should read");
    assert_eq!(again.entries().collect::<Vec<_>>(), entries);
});
