//! Property tests (proptest) of the decoders that take target bytes
//! directly: the three line-table formats, the `_Py_DebugOffsets` parser and
//! validator, the version parsers, and the object readers over arbitrary
//! memory.
//!
//! * **never panics**: arbitrary bytes through every decoder;
//! * **invariants**: decoded ranges are sorted, non-empty and disjoint, the
//!   one-shot [`line_of`] agrees with [`LineTable::line_at`], negative
//!   offsets give `co_firstlineno`, an accepted debug-offsets table only
//!   holds offsets inside sane struct sizes;
//! * **round trips**: random line tables encoded the way CPython's compiler
//!   writes each format (3.11+ through `synthetic::compile_linetable`)
//!   decode to the lines they were made from.
//!
//! Ground truth against CPython's own decoders is in
//! `linetable_ground_truth.rs`. `PROPTEST_CASES` raises the case count.

use std::collections::HashMap;

use proptest::prelude::*;

use pyrometer_cpython::debug_offsets::{self, DebugOffsets};
use pyrometer_cpython::discover::{
    layout_for, parse_py_version, version_from_file_name, version_from_rodata,
};
use pyrometer_cpython::layout::{LineTableFormat, Version};
use pyrometer_cpython::linetable::{line_of, LineTable};
use pyrometer_cpython::{objects, synthetic, Layout};
use pyrometer_process::ImageMemory;

const FORMATS: [LineTableFormat; 3] = [
    LineTableFormat::Lnotab,
    LineTableFormat::Linetable310,
    LineTableFormat::Locations311,
];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Line tables: arbitrary bytes

fn check_table(format: LineTableFormat, table: &[u8], first_line: i32, probes: &[u64]) {
    let lt = LineTable::decode(format, table, first_line);
    let mut prev_end = 0u64;
    for (i, r) in lt.ranges().iter().enumerate() {
        assert!(r.start < r.end, "{format:?} empty range {r:?}");
        assert!(i == 0 || r.start >= prev_end, "{format:?} overlap at {r:?}");
        prev_end = r.end;
    }
    assert_eq!(lt.line_at_signed(-2), Some(first_line));
    let last = lt.ranges().last().map_or(0, |r| r.end.min(1 << 24));
    let offsets = probes
        .iter()
        .copied()
        .chain((0..last.min(512)).step_by(2))
        .chain([last, last.saturating_add(2), u64::MAX]);
    for off in offsets {
        assert_eq!(
            line_of(format, table, first_line, off),
            lt.line_at(off),
            "{format:?} offset {off} of {table:02x?}"
        );
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn line_tables_never_panic_and_agree(
        table in proptest::collection::vec(any::<u8>(), 0..600),
        first_line in any::<i32>(),
        probes in proptest::collection::vec(any::<u64>(), 0..8),
    ) {
        for format in FORMATS {
            check_table(format, &table, first_line, &probes);
        }
    }

    #[test]
    fn location_tables_biased_to_valid_headers(
        entries in proptest::collection::vec((0u8..16, 0u8..8, proptest::collection::vec(any::<u8>(), 0..6)), 0..200),
        first_line in -1000i32..1_000_000,
    ) {
        // Headers with bit 7 set and any code, followed by random varint bytes.
        let mut table = Vec::new();
        for (code, len, tail) in entries {
            table.push(0x80 | (code << 3) | len);
            table.extend(tail.into_iter().map(|b| b & 0x7f));
        }
        check_table(LineTableFormat::Locations311, &table, first_line, &[]);
    }
}

// ---------------------------------------------------------------------------
// Line tables: round trips

/// `(bytes covered, line delta)`; `None` delta = no line (3.10/3.11+).
type Ranges = Vec<(u32, Option<i32>)>;

fn ranges_strategy(no_line: bool) -> impl Strategy<Value = Ranges> {
    let delta = prop_oneof![
        8 => (-3i32..4).prop_map(Some),
        2 => (-400i32..400).prop_map(Some),
        1 => (-70_000i32..70_000).prop_map(Some),
        1 => Just(None),
    ];
    proptest::collection::vec(
        (1u32..40, delta)
            .prop_map(move |(units, d)| (units * 2, if no_line { d } else { d.or(Some(0)) })),
        1..60,
    )
}

/// The line of each range, from `first_line` and the deltas.
fn lines_of(first_line: i32, ranges: &Ranges) -> Vec<(u64, u64, Option<i32>)> {
    let mut line = first_line;
    let mut start = 0u64;
    let mut out = Vec::new();
    for &(len, d) in ranges {
        let l = d.map(|d| {
            line += d;
            line
        });
        out.push((start, start + u64::from(len), l));
        start += u64::from(len);
    }
    out
}

/// 3.8/3.9 `co_lnotab` as `assemble_lnotab` writes it: the byte delta in
/// steps of at most 255 (line delta 0), then the line delta in steps of
/// -128..=127, the first step carrying the rest of the byte delta.
fn encode_lnotab(ranges: &Ranges) -> Vec<u8> {
    let mut out = Vec::new();
    let mut addr_delta = 0u32;
    for &(len, d) in ranges {
        let mut line_delta = d.unwrap_or(0);
        while addr_delta > 255 {
            out.extend([255, 0]);
            addr_delta -= 255;
        }
        let mut first = true;
        while first || line_delta != 0 {
            let step = line_delta.clamp(-128, 127);
            out.extend([if first { addr_delta as u8 } else { 0 }, step as i8 as u8]);
            line_delta -= step;
            first = false;
        }
        addr_delta = len;
    }
    out
}

/// 3.10 `co_linetable` as its compiler writes it: line-delta steps of
/// -127..=127 with no bytes, then the bytes in steps of at most 254 (the
/// first carrying the last line step); `-128` marks "no line".
fn encode_310(ranges: &Ranges) -> Vec<u8> {
    let mut out = Vec::new();
    for &(len, d) in ranges {
        let mut left = len;
        let line_byte = match d {
            None => -128i8,
            Some(mut delta) => {
                while !(-127..=127).contains(&delta) {
                    let step = delta.clamp(-127, 127);
                    out.extend([0, step as i8 as u8]);
                    delta -= step;
                }
                delta as i8
            }
        };
        let mut first = true;
        while left > 0 {
            let n = left.min(254);
            let l = if first || d.is_none() { line_byte } else { 0 };
            out.extend([n as u8, l as u8]);
            left -= n;
            first = false;
        }
    }
    out
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn lnotab_round_trip(ranges in ranges_strategy(false), first_line in 1i32..1_000_000) {
        let table = encode_lnotab(&ranges);
        let lt = LineTable::decode(LineTableFormat::Lnotab, &table, first_line);
        let expected = lines_of(first_line, &ranges);
        for &(start, end, line) in &expected {
            for off in (start..end).step_by(2) {
                prop_assert_eq!(lt.line_at(off), line, "offset {} of {:?}", off, table);
            }
        }
        // Past the end, 3.8/3.9 report the last line.
        let (_, end, last) = *expected.last().unwrap();
        prop_assert_eq!(lt.line_at(end + 100), last);
    }

    #[test]
    fn linetable310_round_trip(ranges in ranges_strategy(true), first_line in 1i32..1_000_000) {
        let table = encode_310(&ranges);
        let lt = LineTable::decode(LineTableFormat::Linetable310, &table, first_line);
        let expected = lines_of(first_line, &ranges);
        for &(start, end, line) in &expected {
            for off in (start..end).step_by(2) {
                prop_assert_eq!(lt.line_at(off), line, "offset {} of {:?}", off, table);
            }
        }
        let (_, end, _) = *expected.last().unwrap();
        prop_assert_eq!(lt.line_at(end), None);
    }

    #[test]
    fn locations311_round_trip(
        pairs in proptest::collection::vec((1u32..40, -70_000i32..70_000), 1..60),
        first_line in 1i32..1_000_000,
    ) {
        let table = synthetic::compile_linetable(&pairs);
        let lt = LineTable::decode(LineTableFormat::Locations311, &table, first_line);
        let units: u32 = pairs.iter().map(|p| p.0).sum();
        for unit in 0..units {
            prop_assert_eq!(
                lt.line_at(2 * u64::from(unit)),
                synthetic::expected_line(first_line, &pairs, unit),
                "unit {}", unit
            );
        }
        prop_assert_eq!(lt.line_at(2 * u64::from(units)), None);
    }
}

// ---------------------------------------------------------------------------
// The debug offsets table

fn real_table(minor: u8) -> Vec<u8> {
    let values = synthetic::debug_values(minor).expect("3.13+");
    debug_offsets::encode(Version::new(3, minor, 0), false, &values)
}

/// What a validated table promises: every size is sane and every offset
/// of a table-derived layout stays below it, so a field address computed
/// from a plausible pointer cannot overflow.
fn check_accepted(d: &DebugOffsets, version: Version) {
    let names = debug_offsets::field_names(version).expect("known version");
    for name in &names {
        let v = d.get(name).expect("parsed field");
        assert!(v <= 1 << 20, "accepted {name} = {v:#x}");
    }
    let _ = layout_for(Version::from_hex(d.version), Some(d));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn debug_offsets_mutated_real_tables(
        minor in 13u8..=15,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), prop_oneof![
            Just(0u64), Just(1), Just(u64::MAX), Just(1 << 20), Just((1 << 20) + 1),
            Just(0x7fff_ffff_ffff), any::<u64>(), 0u64..4096,
        ]), 1..6),
    ) {
        let mut table = real_table(minor);
        let words = table.len() / 8;
        for (i, v) in edits {
            // Keep the cookie; the version word may change.
            let w = 1 + i.index(words - 1);
            table[w * 8..w * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        if let Ok(Some(d)) = DebugOffsets::parse(&table) {
            check_accepted(&d, Version::from_hex(d.version));
        }
        // The same bytes through the memory reader, with the table cut short.
        let mut img = ImageMemory::new();
        let cut = table.len() - (table.len() / 3);
        img.insert(0x10_0000, table[..cut].to_vec());
        let _ = debug_offsets::read(&img, 0x10_0000);
    }

    #[test]
    fn debug_offsets_arbitrary_bytes(
        version in prop_oneof![Just(0x030d_00f0u64), Just(0x030e_00f0), Just(0x030f_00c1), any::<u64>()],
        free in any::<u64>(),
        body in proptest::collection::vec(any::<u64>(), 0..400),
    ) {
        let mut table = debug_offsets::COOKIE.to_vec();
        table.extend(version.to_le_bytes());
        table.extend(free.to_le_bytes());
        for w in body {
            table.extend(w.to_le_bytes());
        }
        if let Ok(Some(d)) = DebugOffsets::parse(&table) {
            check_accepted(&d, Version::from_hex(d.version));
        }
    }

    #[test]
    fn version_parsers_never_panic(text in ".{0,40}", rodata in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_py_version(&text);
        let _ = version_from_file_name(&text);
        let _ = version_from_rodata(&rodata, None);
        let _ = version_from_rodata(&rodata, Some(11));
        if let Some(v) = parse_py_version(&text) {
            prop_assert_eq!(v.major, 3);
        }
    }
}

/// `real_table(minor)` with field `name` set to `v`.
fn table_with(minor: u8, name: &str, v: u64) -> Vec<u8> {
    let names = debug_offsets::field_names(Version::new(3, minor, 0)).unwrap();
    let i = names.iter().position(|n| n == name).expect(name);
    let mut table = real_table(minor);
    table[24 + 8 * i..32 + 8 * i].copy_from_slice(&v.to_le_bytes());
    table
}

/// Found by `debug_offsets_mutated_real_tables`: offsets of sections that
/// carry no `size` (`llist_node`) and 3.15's compact-unicode size were
/// accepted whatever their value.
#[test]
fn debug_offsets_unsized_sections_and_sizes_are_bounded() {
    assert!(DebugOffsets::parse(&real_table(14)).unwrap().is_some());
    assert!(DebugOffsets::parse(&real_table(15)).unwrap().is_some());
    for (minor, name, v) in [
        (14, "llist_node.next", u64::MAX),
        (14, "llist_node.next", 1 << 21),
        (15, "unicode_object.compactunicodeobject_size", u64::MAX),
        (15, "unicode_object.compactunicodeobject_size", 0),
    ] {
        let r = DebugOffsets::parse(&table_with(minor, name, v));
        assert!(
            matches!(r, Err(pyrometer_cpython::CpythonError::BadDebugOffsets(_))),
            "{name} = {v:#x} accepted: {r:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Object readers over arbitrary memory

const REGION: u64 = 0x7f00_0000_0000;
const REGION_LEN: usize = 4096;

fn layouts() -> Vec<Layout> {
    let mut out: Vec<Layout> = (8..=13)
        .map(|minor| Layout::for_version(Version::new(3, minor, 0)).expect("static layout"))
        .collect();
    for minor in [14, 15] {
        let table = real_table(minor);
        let d = DebugOffsets::parse(&table).unwrap().unwrap();
        out.push(layout_for(Version::new(3, minor, 0), Some(&d)).unwrap());
    }
    out
}

proptest! {
    #![proptest_config(config())]

    /// A page of random words, many of them patched to point back into the
    /// page (so object headers, types and items chain into each other).
    #[test]
    fn object_readers_never_panic(
        words in proptest::collection::vec(prop_oneof![
            4 => (0u64..(REGION_LEN as u64 / 8)).prop_map(|w| REGION + 8 * w),
            1 => (0u64..REGION_LEN as u64).prop_map(|b| REGION + b),
            1 => prop_oneof![Just(0u64), Just(1), Just(u64::MAX), Just(i64::MIN as u64), Just(1u64 << 40)],
            2 => any::<u64>(),
            2 => 0u64..300,
        ], REGION_LEN / 8),
        starts in proptest::collection::vec(0u64..(REGION_LEN as u64 / 8), 1..6),
    ) {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut img = ImageMemory::new();
        img.insert(REGION, bytes);
        let mut names = HashMap::new();
        for layout in layouts() {
            for s in &starts {
                let obj = REGION + 8 * s;
                let _ = objects::type_name(&img, &layout, obj);
                let _ = objects::read_str(&img, &layout, obj, 4096);
                let _ = objects::read_bytes(&img, &layout, obj, 4096);
                let _ = objects::read_int_value(&img, &layout, obj, objects::DEFAULT_MAX_INT_DIGITS);
                let _ = objects::read_float(&img, &layout, obj);
                let _ = objects::tuple_items(&img, &layout, obj, 1024);
                let _ = objects::list_items(&img, &layout, obj, 1024);
                let _ = objects::dict_items(&img, &layout, obj, 1024);
                let _ = objects::dict_get_str(&img, &layout, obj, "PATH_INFO");
                let _ = objects::instance_attrs(&img, &layout, obj, 64);
                let _ = objects::get_attr(&img, &layout, obj, "_name");
                let r = objects::render_value(&img, &layout, obj, objects::RENDER_MAX);
                prop_assert!(r.chars().count() <= objects::RENDER_MAX, "{}", r);
                names.insert(layout.version.minor, r);
            }
        }
        prop_assert_eq!(names.len(), 8);
    }
}
