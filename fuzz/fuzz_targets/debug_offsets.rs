//! The `_Py_DebugOffsets` parser and validator on arbitrary bytes after the
//! cookie; an accepted table must only hold bounded values and give a layout
//! without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyrometer_cpython::debug_offsets::{self, DebugOffsets};
use pyrometer_cpython::discover::layout_for;
use pyrometer_cpython::layout::Version;

fuzz_target!(|data: &[u8]| {
    let mut table = debug_offsets::COOKIE.to_vec();
    // Steer the version word to the known minors most of the time.
    if let Some((&pick, rest)) = data.split_first() {
        let hex: u64 = match pick % 4 {
            0 => 0x030d_00f0,
            1 => 0x030e_00f0,
            2 => 0x030f_00f0,
            _ => {
                table.extend_from_slice(rest);
                0
            }
        };
        if hex != 0 {
            table.extend_from_slice(&hex.to_le_bytes());
            table.extend_from_slice(rest);
        }
    }
    if let Ok(Some(d)) = DebugOffsets::parse(&table) {
        let version = Version::from_hex(d.version);
        for name in debug_offsets::field_names(version).unwrap_or_default() {
            assert!(d.get(&name).unwrap_or(0) <= 1 << 20, "{name}");
        }
        let _ = layout_for(version, Some(&d));
    }
});
