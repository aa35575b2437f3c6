//! Every line-table decoder on arbitrary bytes: no panic, and the one-shot
//! lookup agrees with the decoded table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyrometer_cpython::layout::LineTableFormat;
use pyrometer_cpython::linetable::{line_of, LineTable};

fuzz_target!(|data: &[u8]| {
    let Some((head, table)) = data.split_first_chunk::<5>() else {
        return;
    };
    let format = match head[0] % 3 {
        0 => LineTableFormat::Lnotab,
        1 => LineTableFormat::Linetable310,
        _ => LineTableFormat::Locations311,
    };
    let first_line = i32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let lt = LineTable::decode(format, table, first_line);
    let end = lt.ranges().last().map_or(0, |r| r.end.min(4096));
    for off in (0..=end.min(256)).step_by(2).chain([u64::MAX]) {
        assert_eq!(line_of(format, table, first_line, off), lt.line_at(off));
    }
    assert_eq!(lt.line_at_signed(-1), Some(first_line));
});
