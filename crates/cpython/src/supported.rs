//! Which CPython minor versions pyrometer can read, derived from the layout
//! data (the static tables and the `_Py_DebugOffsets` field lists), so that
//! `--version` and messages never disagree with what the reader knows.

use crate::debug_offsets;
use crate::layout::{known_layout, Version};

/// Highest minor version probed; far above any CPython 3 release.
const PROBE_MINORS: u8 = 64;

/// Whether some layout (static table or debug-offsets field list) exists
/// for `3.minor`.
fn minor_is_known(minor: u8) -> bool {
    known_layout(Version::new(3, minor, 0)).is_some() || debug_offsets::knows_minor(3, minor)
}

/// The lowest and highest supported `(major, minor)`.
pub fn supported_minors() -> ((u8, u8), (u8, u8)) {
    let mut known = (0..=PROBE_MINORS).filter(|&m| minor_is_known(m));
    // The tables are compiled in: 3.8 is always there.
    let low = known.next().unwrap_or(8);
    let high = known.next_back().unwrap_or(low);
    ((3, low), (3, high))
}

/// `3.8–3.15`, for `--version` and help texts.
pub fn supported_range() -> String {
    let ((maj_lo, lo), (maj_hi, hi)) = supported_minors();
    format!("{maj_lo}.{lo}\u{2013}{maj_hi}.{hi}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_what_the_tables_know() {
        assert_eq!(supported_minors(), ((3, 8), (3, 15)));
        assert_eq!(supported_range(), "3.8\u{2013}3.15");
    }

    #[test]
    fn the_range_has_no_holes() {
        let ((_, lo), (_, hi)) = supported_minors();
        for minor in lo..=hi {
            assert!(minor_is_known(minor), "3.{minor} has no layout");
        }
        assert!(!minor_is_known(lo - 1));
        assert!(!minor_is_known(hi + 1));
    }
}
