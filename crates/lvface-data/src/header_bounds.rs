//! Exact key bounds from insightface's float32 header labels.
//!
//! insightface stores the header's bounds (one past the last image key, one past the last
//! identity record) and each identity's `[first, end)` image keys as float32 labels. Above 2^24
//! float32 cannot hold every integer: 16,778,217 is stored as 16,778,216 and WebFace42M's
//! 42,474,558 as 42,474,560. A stored bound above 2^24 therefore names a window of keys (half the
//! float32 spacing either side), and the exact bound is the one key of that window where the
//! records change kind (image to identity record, class `c` to `c + 1`), which is asked of the
//! records themselves. Below 2^24 the stored value is the bound.

use crate::error::Result;

/// Every whole number below this is exact in float32.
pub const EXACT_BELOW: u64 = 1 << 24;

/// A stored header label as a key bound: a finite, non-negative whole number (every float32 at
/// or above 2^23 is whole) below 2^64, which `as u64` would saturate, leaving no room for the
/// rounding window above it.
pub fn stored_bound(label: f32) -> std::result::Result<u64, String> {
    if label.is_finite() && label >= 0.0 && label.fract() == 0.0 && label < 2f32.powi(64) {
        Ok(label as u64)
    } else {
        Err(format!("label {label} is not a record key"))
    }
}

/// The keys a float32 value `stored` may have been rounded from.
pub fn rounding_window(stored: u64) -> std::ops::RangeInclusive<u64> {
    if stored < EXACT_BELOW {
        return stored..=stored;
    }
    let exponent = 63 - stored.leading_zeros();
    let half_spacing = 1u64 << (exponent - 24);
    stored - half_spacing..=stored + half_spacing
}

/// The exact bound for `stored`: the key `e` of its [`rounding_window`] with `before(e - 1)` and
/// not `before(e)`, where `before(k)` says whether key `k` lies before the bound. `None` when no
/// key of the window is such a change (the header does not describe the records). Below 2^24 no
/// record is read.
pub fn resolve_bound(
    stored: u64,
    mut before: impl FnMut(u64) -> Result<bool>,
) -> Result<Option<u64>> {
    if stored < EXACT_BELOW {
        return Ok(Some(stored));
    }
    for e in rounding_window(stored) {
        if !before(e)? {
            return Ok(if before(e - 1)? { Some(e) } else { None });
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The float32 an insightface header would store for `key`.
    fn stored(key: u64) -> u64 {
        key as f32 as u64
    }

    /// An input the `ir_header` fuzz target reaches: `as u64` saturates labels of 2^64 and above.
    #[test]
    fn labels_past_the_largest_key_are_refused() {
        for label in [2f32.powi(64), f32::MAX] {
            let err = stored_bound(label).unwrap_err();
            assert!(err.contains("not a record key"), "{err}");
        }
        assert_eq!(stored_bound(2f32.powi(63)), Ok(1 << 63));
    }

    #[test]
    fn windows_cover_every_key_that_rounds_to_the_stored_value() {
        for key in [
            (1u64 << 24) - 1,
            1 << 24,
            (1 << 24) + 1,
            16_778_217,
            (1 << 25) - 1,
            1 << 25,
            (1 << 25) + 3,
            42_474_558,
            42_474_557 + 2_059_906 + 1,
            (1 << 30) + 77,
        ] {
            let window = rounding_window(stored(key));
            assert!(window.contains(&key), "{key} not in {window:?}");
            // The window is no wider than the float32 spacing around the value.
            let width = window.end() - window.start();
            let spacing = ((key as f32).next_up() - key as f32) as u64;
            assert!(
                width <= spacing.max(1),
                "{key}: {window:?} vs spacing {spacing}"
            );
        }
        assert_eq!(stored(16_778_217), 16_778_216);
        assert_eq!(stored(42_474_558), 42_474_560);
    }

    #[test]
    fn the_bound_is_where_the_records_change_not_the_stored_value() {
        for bound in [
            16_778_217u64,
            42_474_558,
            42_474_559,
            42_474_560,
            42_474_561,
            1 << 25,
        ] {
            let mut reads = 0;
            let got = resolve_bound(stored(bound), |k| {
                reads += 1;
                Ok(k < bound)
            })
            .unwrap();
            assert_eq!(got, Some(bound));
            assert!(reads <= 6, "{reads} reads");
        }
        // Exact values are taken as they are, without reading a record.
        let got = resolve_bound(1000, |_| panic!("no read below 2^24")).unwrap();
        assert_eq!(got, Some(1000));
        // A header that does not describe the records: the change is outside the window.
        assert_eq!(
            resolve_bound(42_474_560, |k| Ok(k < 42_000_000)).unwrap(),
            None
        );
        assert_eq!(resolve_bound(42_474_560, |_| Ok(true)).unwrap(), None);
    }

    #[test]
    fn stored_bounds_are_whole_non_negative_numbers() {
        assert_eq!(stored_bound(42_474_560.0), Ok(42_474_560));
        for bad in [-1.0, 0.5, f32::NAN, f32::INFINITY] {
            assert!(stored_bound(bad).is_err(), "{bad}");
        }
    }
}
