//! Arbitrary bytes as a record payload: the IRHeader parses or is described, never panics, and
//! what parses packs back to the same header.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lvface_data::IrHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, body)) = IrHeader::parse(data) {
        assert!(body.len() <= data.len());
        let packed = header.pack(body);
        let (again, again_body) = IrHeader::parse(&packed).expect("a packed header should parse");
        // Debug output compares NaN labels too, which `==` would call different.
        assert_eq!(format!("{header:?}"), format!("{again:?}"));
        assert_eq!(body, again_body);
    }
});
