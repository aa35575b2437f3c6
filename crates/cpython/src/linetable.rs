//! Line-number decoding for every CPython line table format.
//!
//! A code object maps bytecode offsets to source lines through a compact
//! table whose format changed twice:
//!
//! | versions  | field          | format                                             |
//! |-----------|----------------|----------------------------------------------------|
//! | 3.8–3.9   | `co_lnotab`    | pairs (unsigned byte delta, signed line delta)     |
//! | 3.10      | `co_linetable` | PEP 626 pairs (unsigned byte delta, signed line delta, `-128` = no line) |
//! | 3.11–3.15 | `co_linetable` | PEP 657 location entries (code units + varints)    |
//!
//! Every decoder here mirrors the corresponding `PyCode_Addr2Line` of that
//! version, so [`LineTable::line_at`] returns what CPython itself reports as
//! `frame.f_lineno` for the same offset. The input comes from another
//! process and is untrusted: decoding never panics, never reads out of
//! bounds, and stops after [`MAX_ENTRIES`] table entries.
//!
//! # Offsets
//!
//! All offsets are **byte** offsets into the bytecode:
//!
//! * 3.8/3.9: `f_lasti` (already in bytes);
//! * 3.10: `f_lasti * 2` (`f_lasti` counts code units there);
//! * 3.11/3.12: `prev_instr - _PyCode_CODE(code)` in bytes;
//! * 3.13+: `instr_ptr - _PyCode_CODE(code)` in bytes.
//!
//! Since 3.11 inline cache entries occupy code units and the location table
//! covers them, so an offset pointing into a cache maps to the line of the
//! instruction that owns the cache. A *negative* offset (3.10 `f_lasti == -1`
//! or 3.11/3.12 `prev_instr` one unit before the code on a frame that has not
//! started) makes CPython report `co_firstlineno`; use
//! [`LineTable::line_at_signed`] for such raw values.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout::LineTableFormat;

/// The maximum number of raw table entries decoded from one table.
///
/// Entries beyond the cap are ignored; offsets they would cover report no
/// line. Real code objects stay far below it.
pub const MAX_ENTRIES: usize = 65_536;

/// One decoded range: the bytecode bytes `[start, end)` map to `line`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRange {
    /// First byte offset of the range.
    pub start: u64,
    /// One past the last byte offset of the range (`u64::MAX` for the
    /// open-ended last range of a 3.8/3.9 `co_lnotab`).
    pub end: u64,
    /// The line, or `None` for "no location" (3.10+ artificial instructions).
    pub line: Option<i32>,
}

impl LineRange {
    /// Whether `byte_offset` falls in the range (an `end` of `u64::MAX`
    /// is unbounded).
    pub fn contains(&self, byte_offset: u64) -> bool {
        self.start <= byte_offset && (byte_offset < self.end || self.end == u64::MAX)
    }
}

/// Decoded line ranges of one code object, for caching and fast lookup.
///
/// The ranges are sorted, non-empty and non-overlapping; adjacent ranges of
/// the same line are merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineTable {
    ranges: Vec<LineRange>,
    first_line: i32,
    last_lookup: LastLookup,
}

/// The last offset looked up in a table and its line. A caller frame sits at
/// the same call site sample after sample: answering it from here skips the
/// binary search, whose steps are cache misses after the sampler slept
/// (65 % of the walk's time under gunicorn at 1 kHz).
///
/// Packed in one word so that a lookup from several threads never sees an
/// offset with another offset's line: `offset + 1` in the high half (0:
/// empty), the line's bits in the low half (`NO_LINE`: no line).
#[derive(Debug, Default)]
struct LastLookup(AtomicU64);

const NO_LINE: u32 = i32::MIN as u32;

impl LastLookup {
    fn get(&self, byte_offset: u64) -> Option<Option<i32>> {
        if byte_offset >= u64::from(u32::MAX) {
            return None;
        }
        let packed = self.0.load(Ordering::Relaxed);
        if packed >> 32 != byte_offset + 1 {
            return None;
        }
        Some(match packed as u32 {
            NO_LINE => None,
            line => Some(line as i32),
        })
    }

    fn set(&self, byte_offset: u64, line: Option<i32>) {
        // Offsets that do not fit are not remembered (no code is that long).
        if byte_offset >= u64::from(u32::MAX) {
            return;
        }
        let line_bits = match line {
            Some(l) if l as u32 != NO_LINE => l as u32,
            Some(_) => return,
            None => NO_LINE,
        };
        self.0.store(
            ((byte_offset + 1) << 32) | u64::from(line_bits),
            Ordering::Relaxed,
        );
    }
}

impl Clone for LastLookup {
    fn clone(&self) -> Self {
        LastLookup(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

/// A memo, not part of the table's value.
impl PartialEq for LastLookup {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LastLookup {}

impl LineTable {
    /// Bytes of pyrometer's memory the decoded table holds.
    pub fn heap_bytes(&self) -> usize {
        self.ranges.capacity() * std::mem::size_of::<LineRange>()
    }

    /// Decode `table` (`co_lnotab` for [`LineTableFormat::Lnotab`],
    /// `co_linetable` otherwise) of a code object whose `co_firstlineno` is
    /// `first_line`.
    pub fn decode(format: LineTableFormat, table: &[u8], first_line: i32) -> LineTable {
        let mut ranges: Vec<LineRange> = Vec::new();
        for r in ranges_of(format, table, first_line) {
            match ranges.last_mut() {
                Some(last) if last.end == r.start && last.line == r.line => last.end = r.end,
                _ => ranges.push(r),
            }
        }
        ranges.shrink_to_fit();
        LineTable {
            ranges,
            first_line,
            last_lookup: LastLookup::default(),
        }
    }

    /// The line CPython reports (as `frame.f_lineno` / `PyCode_Addr2Line`)
    /// for the instruction at `byte_offset` into the bytecode. `None` for no
    /// line (3.10/3.11+ "no location" entries) or out of range.
    ///
    /// For 3.8/3.9 (`co_lnotab`) there is no "out of range": like CPython,
    /// every offset past the last table entry maps to the last line.
    pub fn line_at(&self, byte_offset: u64) -> Option<i32> {
        if let Some(line) = self.last_lookup.get(byte_offset) {
            return line;
        }
        let line = self.search(byte_offset);
        self.last_lookup.set(byte_offset, line);
        line
    }

    fn search(&self, byte_offset: u64) -> Option<i32> {
        let idx = self.ranges.partition_point(|r| r.start <= byte_offset);
        let r = self.ranges.get(idx.checked_sub(1)?)?;
        if r.contains(byte_offset) {
            r.line
        } else {
            None
        }
    }

    /// Like [`LineTable::line_at`] for a raw, possibly negative, byte offset:
    /// CPython's `PyCode_Addr2Line` returns `co_firstlineno` for negative
    /// offsets in every version (a frame that has not executed anything yet).
    pub fn line_at_signed(&self, byte_offset: i64) -> Option<i32> {
        match u64::try_from(byte_offset) {
            Ok(off) => self.line_at(off),
            Err(_) => Some(self.first_line),
        }
    }

    /// The `co_firstlineno` the table was decoded with.
    pub fn first_line(&self) -> i32 {
        self.first_line
    }

    /// The decoded ranges, sorted by offset.
    pub fn ranges(&self) -> &[LineRange] {
        &self.ranges
    }

    /// Iterate over the decoded ranges.
    pub fn iter(&self) -> impl Iterator<Item = LineRange> + '_ {
        self.ranges.iter().copied()
    }

    /// The number of decoded ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether no offset maps to anything.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Approximate heap bytes held, for cache accounting.
    pub fn heap_size(&self) -> usize {
        self.ranges.capacity() * std::mem::size_of::<LineRange>()
    }
}

/// One-shot lookup without building a [`LineTable`]: the line CPython
/// reports for `byte_offset` (see [`LineTable::line_at`]).
pub fn line_of(
    format: LineTableFormat,
    table: &[u8],
    first_line: i32,
    byte_offset: u64,
) -> Option<i32> {
    ranges_of(format, table, first_line)
        .find(|r| byte_offset < r.end || r.end == u64::MAX)
        .and_then(|r| {
            if r.contains(byte_offset) {
                r.line
            } else {
                None
            }
        })
}

/// Iterate over the raw (unmerged, non-empty, contiguous from 0) ranges of
/// a table, in the order CPython's decoder produces them.
pub fn ranges_of(format: LineTableFormat, table: &[u8], first_line: i32) -> Ranges<'_> {
    Ranges {
        format,
        table,
        pos: 0,
        entries: 0,
        addr: 0,
        line: first_line,
        done: false,
    }
}

/// Iterator over the ranges of a line table; see [`ranges_of`].
#[derive(Debug, Clone)]
pub struct Ranges<'a> {
    format: LineTableFormat,
    table: &'a [u8],
    /// Next unread byte of `table`.
    pos: usize,
    /// Raw entries consumed so far (bounded by [`MAX_ENTRIES`]).
    entries: usize,
    /// Byte offset where the next range starts.
    addr: u64,
    /// The running line (`computed_line` in CPython).
    line: i32,
    done: bool,
}

impl Iterator for Ranges<'_> {
    type Item = LineRange;

    fn next(&mut self) -> Option<LineRange> {
        if self.done {
            return None;
        }
        let r = match self.format {
            LineTableFormat::Lnotab => self.next_lnotab(),
            LineTableFormat::Linetable310 => self.next_310(),
            LineTableFormat::Locations311 => self.next_311(),
        };
        if r.is_none() {
            self.done = true;
        }
        r
    }
}

impl Ranges<'_> {
    /// Take the next 2-byte pair of a 3.8–3.10 table, if any and under the cap.
    fn pair(&mut self) -> Option<(u8, i8)> {
        if self.entries >= MAX_ENTRIES {
            return None;
        }
        let b = self.table.get(self.pos..self.pos.checked_add(2)?)?;
        self.pos += 2;
        self.entries += 1;
        Some((b[0], b[1] as i8))
    }

    /// 3.8/3.9 `PyCode_Addr2Line`:
    ///
    /// ```c
    /// while (--size >= 0) {          // size = len(co_lnotab) / 2
    ///     addr += *p++;
    ///     if (addr > addrq) break;
    ///     line += (signed char)*p++;
    /// }
    /// return line;
    /// ```
    ///
    /// So the line of `addrq` is the line after applying every pair whose
    /// cumulative address is `<= addrq`; the last range is open-ended. A
    /// trailing odd byte is ignored.
    fn next_lnotab(&mut self) -> Option<LineRange> {
        let start = self.addr;
        loop {
            let Some((addr_incr, line_incr)) = self.pair() else {
                // The end of the table: the rest of the bytecode has the
                // current line. If the entry cap cut the table short, the
                // real end is unknown, so report nothing rather than a wrong
                // line.
                let truncated = self.entries >= MAX_ENTRIES && self.pos + 1 < self.table.len();
                self.done = true;
                return (!truncated).then_some(LineRange {
                    start,
                    end: u64::MAX,
                    line: Some(self.line),
                });
            };
            let line = self.line;
            self.line = self.line.wrapping_add(i32::from(line_incr));
            if addr_incr != 0 {
                self.addr += u64::from(addr_incr);
                return Some(LineRange {
                    start,
                    end: self.addr,
                    line: Some(line),
                });
            }
        }
    }

    /// 3.10 `PyLineTable_NextAddressRange`: pairs of (unsigned byte delta,
    /// signed line delta); a line delta of -128 means "no line" and leaves
    /// the running line unchanged. Zero-width entries are skipped but their
    /// line deltas still accumulate.
    fn next_310(&mut self) -> Option<LineRange> {
        loop {
            let (addr_incr, line_incr) = self.pair()?;
            let line = if line_incr == -128 {
                None
            } else {
                self.line = self.line.wrapping_add(i32::from(line_incr));
                Some(self.line)
            };
            if addr_incr != 0 {
                let start = self.addr;
                self.addr += u64::from(addr_incr);
                return Some(LineRange {
                    start,
                    end: self.addr,
                    line,
                });
            }
        }
    }

    /// 3.11+ `advance()` over the PEP 657 location table.
    ///
    /// Mirrors CPython exactly, including for malformed input: the byte at
    /// the current position is taken as an entry header whatever its bit 7,
    /// the next entry starts at the next byte with bit 7 set, and only a
    /// header with bits 7..3 all set (`code == 15` *and* bit 7) is "no line".
    fn next_311(&mut self) -> Option<LineRange> {
        if self.entries >= MAX_ENTRIES {
            return None;
        }
        let header = *self.table.get(self.pos)?;
        self.entries += 1;
        let code = (header >> 3) & 15;
        let delta = match code {
            13 | 14 => signed_varint(self.table.get(self.pos + 1..).unwrap_or(&[])),
            11 => 1,
            12 => 2,
            // 0..=9 short forms, 10 one-line form with delta 0, 15 no location
            _ => 0,
        };
        self.line = self.line.wrapping_add(delta);
        let line = if header >> 3 == 0x1f {
            None
        } else {
            Some(self.line)
        };
        let start = self.addr;
        self.addr += (u64::from(header & 7) + 1) * 2;
        self.pos += 1;
        while self.table.get(self.pos).is_some_and(|b| b & 0x80 == 0) {
            self.pos += 1;
        }
        Some(LineRange {
            start,
            end: self.addr,
            line,
        })
    }
}

/// CPython's `scan_varint`: 6-bit little-endian chunks, bit 6 continues.
/// Bounded by the slice; bits shifted past 32 are dropped (`unsigned int`).
fn varint(bytes: &[u8]) -> u32 {
    let mut val = 0u32;
    let mut shift = 0u32;
    for &b in bytes {
        if shift < 32 {
            val |= u32::from(b & 63) << shift;
        }
        if b & 64 == 0 {
            break;
        }
        shift = shift.saturating_add(6);
    }
    val
}

/// CPython's `scan_signed_varint`: zig-zag with the sign in bit 0.
fn signed_varint(bytes: &[u8]) -> i32 {
    let u = varint(bytes);
    // `u >> 1` < 2^31, so the cast is lossless.
    let mag = (u >> 1) as i32;
    if u & 1 != 0 {
        -mag
    } else {
        mag
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LineTableFormat::{Linetable310, Lnotab, Locations311};

    /// Every offset's line, `0..n` in steps of `step`.
    fn lines(t: &LineTable, n: u64, step: u64) -> Vec<Option<i32>> {
        (0..n)
            .step_by(step as usize)
            .map(|o| t.line_at(o))
            .collect()
    }

    /// The table and the one-shot lookup agree everywhere.
    fn check_consistent(format: LineTableFormat, table: &[u8], first: i32, upto: u64) {
        let t = LineTable::decode(format, table, first);
        for off in 0..upto {
            assert_eq!(
                t.line_at(off),
                line_of(format, table, first, off),
                "{format:?} {table:02x?} at {off}"
            );
        }
        for w in t.ranges().windows(2) {
            assert!(w[0].end <= w[1].start, "overlap in {:?}", t.ranges());
        }
        for r in t.ranges() {
            assert!(r.start < r.end);
        }
    }

    /// Encode a signed varint the way CPython's compiler does.
    fn write_signed_varint(out: &mut Vec<u8>, v: i32) {
        let mut u = if v < 0 {
            ((v.unsigned_abs()) << 1) | 1
        } else {
            (v as u32) << 1
        };
        loop {
            let chunk = (u & 63) as u8;
            u >>= 6;
            if u == 0 {
                out.push(chunk);
                break;
            }
            out.push(chunk | 64);
        }
    }

    // ---- 3.8 / 3.9 ----

    /// The last-lookup memo answers exactly what the search does, whatever
    /// the order of lookups (same offset twice, alternating offsets, offsets
    /// with no line, out of range, too large to remember).
    #[test]
    fn remembered_lookups_answer_what_the_search_does() {
        // 3.10 table: lines 1, 2, no line, 4 over 2-byte units.
        let t = LineTable::decode(Linetable310, &[2, 1, 2, 1, 2, 0x80, 2, 0x81], 0);
        assert!(t.ranges().iter().any(|r| r.line.is_none()));
        let mut offsets: Vec<u64> = vec![u64::MAX, u64::from(u32::MAX), 1 << 40];
        let mut x = 7u64;
        for _ in 0..500 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            offsets.push((x >> 33) % 12);
        }
        for &off in offsets.iter().chain(offsets.iter().rev()) {
            assert_eq!(t.line_at(off), t.search(off), "offset {off}");
            assert_eq!(t.line_at(off), t.search(off), "offset {off} again");
        }
        // A line that cannot be packed is not remembered, and still right.
        let mut odd = LineTable::default();
        odd.ranges.push(LineRange {
            start: 0,
            end: 4,
            line: Some(i32::MIN),
        });
        assert_eq!(odd.line_at(2), Some(i32::MIN));
        assert_eq!(odd.line_at(2), Some(i32::MIN));
        assert_eq!(odd.line_at(5), None);
        // Clones keep the table's value; equality ignores the memo.
        assert_eq!(t.clone(), t);
    }

    #[test]
    fn lnotab_basic() {
        // def g():\n    x = 1\n    return x   (3.8, first line 5)
        let t = LineTable::decode(Lnotab, &[0x00, 0x01, 0x04, 0x01], 5);
        assert_eq!(
            lines(&t, 12, 2),
            [Some(6), Some(6), Some(7), Some(7), Some(7), Some(7)]
        );
        // open-ended last range
        assert_eq!(t.line_at(1 << 40), Some(7));
        assert_eq!(t.line_at(u64::MAX), Some(7));
        check_consistent(Lnotab, &[0x00, 0x01, 0x04, 0x01], 5, 64);
    }

    #[test]
    fn lnotab_empty_and_odd() {
        let t = LineTable::decode(Lnotab, &[], 42);
        assert_eq!(t.line_at(0), Some(42));
        assert_eq!(t.line_at(1000), Some(42));
        // A trailing odd byte is ignored (size = len / 2).
        let t = LineTable::decode(Lnotab, &[2, 1, 7], 10);
        assert_eq!(
            lines(&t, 6, 1),
            [Some(10), Some(10), Some(11), Some(11), Some(11), Some(11)]
        );
        check_consistent(Lnotab, &[2, 1, 7], 10, 20);
    }

    #[test]
    fn lnotab_negative_and_large_deltas() {
        // Line goes 1 -> 300 (0,127)(0,127)(0,45) at 0; then at 4 back by 5 (0xfb);
        // a 300-byte jump is split as (255,0)(45,1).
        let table = [0, 127, 0, 127, 0, 45, 4, 0xfb, 255, 0, 45, 1];
        let t = LineTable::decode(Lnotab, &table, 1);
        assert_eq!(t.line_at(0), Some(300));
        assert_eq!(t.line_at(3), Some(300));
        assert_eq!(t.line_at(4), Some(295));
        assert_eq!(t.line_at(4 + 254), Some(295));
        assert_eq!(t.line_at(4 + 255), Some(295));
        assert_eq!(t.line_at(4 + 299), Some(295));
        assert_eq!(t.line_at(4 + 300), Some(296));
        // adjacent same-line ranges were merged
        assert_eq!(t.len(), 3);
        check_consistent(Lnotab, &table, 1, 400);
    }

    #[test]
    fn lnotab_line_decrease_then_increase_same_addr() {
        // (0, -1) at the start applies to offset 0 as CPython does.
        let t = LineTable::decode(Lnotab, &[0, 0xff, 2, 3], 10);
        assert_eq!(lines(&t, 4, 1), [Some(9), Some(9), Some(12), Some(12)]);
    }

    #[test]
    fn lnotab_cap() {
        // More pairs than the cap: offsets past the cap report nothing.
        let mut table = Vec::new();
        for _ in 0..MAX_ENTRIES + 10 {
            table.extend_from_slice(&[2, 1]);
        }
        let t = LineTable::decode(Lnotab, &table, 0);
        assert_eq!(t.line_at(0), Some(0));
        assert_eq!(t.line_at(2), Some(1));
        let last = (MAX_ENTRIES as u64) * 2;
        assert_eq!(t.line_at(last - 1), Some(MAX_ENTRIES as i32 - 1));
        assert_eq!(t.line_at(last), None);
        // Exactly the cap is not a truncation.
        let t = LineTable::decode(Lnotab, &table[..MAX_ENTRIES * 2], 0);
        assert_eq!(t.line_at(last + 100), Some(MAX_ENTRIES as i32));
    }

    #[test]
    fn lnotab_wrapping_lines_do_not_panic() {
        let t = LineTable::decode(Lnotab, &[0, 127, 2, 127], i32::MAX);
        assert_eq!(t.line_at(0), Some(i32::MAX.wrapping_add(127)));
    }

    // ---- 3.10 ----

    #[test]
    fn linetable310_basic() {
        // def g():\n    x = 1\n    return x   (3.10, first line 5)
        let table = [0x04, 0x01, 0x04, 0x01];
        let t = LineTable::decode(Linetable310, &table, 5);
        assert_eq!(
            lines(&t, 12, 2),
            [Some(6), Some(6), Some(7), Some(7), None, None]
        );
        assert_eq!(t.line_at(u64::MAX), None);
        check_consistent(Linetable310, &table, 5, 20);
    }

    #[test]
    fn linetable310_no_line_and_zero_width() {
        // [0,2) line 11; [2,4) none; zero-width (0,+3) accumulates; [4,8) 11+3-1 = 13;
        // [8,10) none (line stays 13); [10,12) 13 + 2 = 15.
        let table = [2, 1, 2, 0x80, 0, 3, 4, 0xff, 2, 0x80, 2, 2];
        let t = LineTable::decode(Linetable310, &table, 10);
        assert_eq!(
            lines(&t, 14, 2),
            [Some(11), None, Some(13), Some(13), None, Some(15), None]
        );
        check_consistent(Linetable310, &table, 10, 20);
    }

    #[test]
    fn linetable310_empty_truncated() {
        let t = LineTable::decode(Linetable310, &[], 1);
        assert!(t.is_empty());
        assert_eq!(t.line_at(0), None);
        assert_eq!(t.line_at_signed(-2), Some(1));
        // odd trailing byte is dropped
        let t = LineTable::decode(Linetable310, &[4, 1, 9], 1);
        assert_eq!(lines(&t, 6, 2), [Some(2), Some(2), None]);
        // only zero-width entries: no ranges
        let t = LineTable::decode(Linetable310, &[0, 1, 0, 1], 1);
        assert!(t.is_empty());
        check_consistent(Linetable310, &[0, 1, 0, 1, 0], 1, 10);
    }

    #[test]
    fn linetable310_large_jumps() {
        // A 300-byte instruction run split into (254,+1)(46,0), then (2,-1).
        let table = [254, 1, 46, 0, 2, 0xff];
        let t = LineTable::decode(Linetable310, &table, 7);
        assert_eq!(t.line_at(0), Some(8));
        assert_eq!(t.line_at(299), Some(8));
        assert_eq!(t.line_at(300), Some(7));
        assert_eq!(t.line_at(302), None);
        assert_eq!(t.len(), 2);
    }

    // ---- 3.11+ ----

    #[test]
    fn locations311_basic() {
        // def g():\n    x = 1\n    return x   (3.11–3.13, first line 4)
        let table = b"\x80\x00\xd8\x06\x07\x80A\xd8\x0b\x0c\x80H";
        let t = LineTable::decode(Locations311, table, 4);
        assert_eq!(
            lines(&t, 14, 2),
            [Some(4), Some(5), Some(5), Some(6), Some(6), None, None]
        );
        // odd offsets inside a code unit map like the unit
        assert_eq!(t.line_at(3), Some(5));
        check_consistent(Locations311, table, 4, 20);
    }

    #[test]
    fn locations311_all_codes() {
        let mut table = Vec::new();
        // short form (code 3), 2 units: line 100
        table.extend_from_slice(&[0x80 | (3 << 3) | 1, 0x25]);
        // one-line form +2 (code 12), 1 unit: 102
        table.extend_from_slice(&[0x80 | (12 << 3), 4, 9]);
        // no columns (code 13), delta -50, 3 units: 52
        table.push(0x80 | (13 << 3) | 2);
        write_signed_varint(&mut table, -50);
        // no location (code 15), 8 units: none, line stays 52
        table.push(0x80 | (15 << 3) | 7);
        // long form (code 14), delta +1000, 1 unit: 1052
        table.push(0x80 | (14 << 3));
        write_signed_varint(&mut table, 1000);
        write_signed_varint(&mut table, 2); // end line delta (unsigned, here 2)
        write_signed_varint(&mut table, 5); // col + 1
        write_signed_varint(&mut table, 300); // end col + 1
                                              // one-line form +1 (code 11), 1 unit: 1053
        table.extend_from_slice(&[0x80 | (11 << 3), 0, 1]);
        // one-line form +0 (code 10), 1 unit: 1053
        table.extend_from_slice(&[0x80 | (10 << 3), 0, 1]);

        let t = LineTable::decode(Locations311, &table, 100);
        let want: Vec<Option<i32>> = [Some(100); 2]
            .into_iter()
            .chain([Some(102)])
            .chain([Some(52); 3])
            .chain([None; 8])
            .chain([Some(1052), Some(1053), Some(1053), None])
            .collect();
        assert_eq!(lines(&t, 2 * want.len() as u64, 2), want);
        check_consistent(Locations311, &table, 100, 50);
    }

    #[test]
    fn locations311_empty_and_truncated() {
        let t = LineTable::decode(Locations311, &[], 1);
        assert!(t.is_empty());
        assert_eq!(t.line_at(0), None);
        // varint cut off at the end of the table
        let t = LineTable::decode(Locations311, &[0x80 | (13 << 3), 0x44], 10);
        assert_eq!(t.line_at(0), Some(12));
        assert_eq!(t.line_at(2), None);
        // header with no payload at all
        let t = LineTable::decode(Locations311, &[0x80 | (14 << 3) | 1], 10);
        assert_eq!(lines(&t, 6, 2), [Some(10), Some(10), None]);
        check_consistent(Locations311, &[0x80 | (13 << 3), 0x44], 10, 10);
    }

    #[test]
    fn locations311_huge_varints() {
        // 1000 continuation bytes: must not hang or panic; bits past 32 dropped.
        let mut table = vec![0x80 | (13 << 3)];
        table.extend_from_slice(&[0x7f; 1000]);
        table.push(0x3f);
        table.extend_from_slice(&[0x80 | (10 << 3), 0, 0]);
        let t = LineTable::decode(Locations311, &table, 0);
        assert!(t.line_at(0).is_some());
        assert!(t.line_at(2).is_some());
        assert_eq!(t.line_at(4), None);
        assert_eq!(varint(&[0x7f; 100]), u32::MAX);
        assert_eq!(signed_varint(&[0x7f; 100]), -(i32::MAX));
        assert_eq!(signed_varint(&[0x03]), -1);
        assert_eq!(signed_varint(&[0x44, 0x01]), 34);
    }

    #[test]
    fn locations311_no_line_needs_bit7() {
        // CPython's is_no_line_marker checks `b >> 3 == 0x1f`: a first byte with
        // code 15 but bit 7 clear is an ordinary entry on the running line.
        let t = LineTable::decode(Locations311, &[(15 << 3), 0xf8], 9);
        assert_eq!(lines(&t, 6, 2), [Some(9), None, None]);
        // Garbage without bit 7 after a header belongs to that entry.
        let t = LineTable::decode(Locations311, &[0x80, 1, 2, 3, 4, 0x80 | (11 << 3)], 9);
        assert_eq!(lines(&t, 6, 2), [Some(9), Some(10), None]);
    }

    #[test]
    fn locations311_cap() {
        let table = vec![0x80 | (11 << 3); MAX_ENTRIES + 5];
        let t = LineTable::decode(Locations311, &table, 0);
        let last = MAX_ENTRIES as u64 * 2;
        assert_eq!(t.line_at(last - 2), Some(MAX_ENTRIES as i32));
        assert_eq!(t.line_at(last), None);
        assert_eq!(t.len(), MAX_ENTRIES);
    }

    #[test]
    fn signed_offsets() {
        let t = LineTable::decode(Locations311, b"\x80\x00\xd8\x06\x07", 4);
        assert_eq!(t.first_line(), 4);
        assert_eq!(t.line_at_signed(-2), Some(4));
        assert_eq!(t.line_at_signed(i64::MIN), Some(4));
        assert_eq!(t.line_at_signed(2), Some(5));
    }

    /// Random bytes in every format: no panic, table == one-shot, sorted ranges.
    #[test]
    fn fuzz_random_tables() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..1000 {
            let len = (rnd() % 40) as usize;
            let table: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            let first = (rnd() % 2000) as i32 - 1000;
            for format in [Lnotab, Linetable310, Locations311] {
                check_consistent(format, &table, first, 300);
            }
        }
    }
}
