//! Side-channel samples: what a pprof sample cannot say by its values is
//! carried by samples whose time values are 0 (totals of every viewer are
//! unchanged), told apart from the aggregated samples by a marker label:
//!
//! * [`TIMESTAMP_LABEL`](super::TIMESTAMP_LABEL) (a number): a timeline entry;
//! * [`MEMORY_LABEL`](super::MEMORY_LABEL) (`reading`, `peak`, `growth`):
//!   attach-mode memory;
//! * [`ALLOCATION_LABEL`] (`attributed`, `stack not read`): an allocation
//!   site of `record --memory` (its allocation values are not 0).
//!
//! One writer ([`SideSample`]) and one reader ([`Labels`], [`Side`]) for
//! the three.

use super::{proto, Strings};

/// The label that marks an allocation site (`record --memory`).
pub const ALLOCATION_LABEL: &str = "memory_site";

/// A side-channel sample under construction.
pub(super) struct SideSample {
    label: Vec<proto::Label>,
}

impl SideSample {
    /// A sample marked by a string label (`MEMORY_LABEL`, `ALLOCATION_LABEL`).
    pub(super) fn marked(st: &mut Strings, marker: &str, kind: &str) -> Self {
        let mut s = SideSample { label: Vec::new() };
        s.str(st, marker, kind);
        s
    }

    /// A sample marked by a number label (`TIMESTAMP_LABEL`).
    pub(super) fn marked_num(st: &mut Strings, marker: &str, num: i64, unit: &str) -> Self {
        let mut s = SideSample { label: Vec::new() };
        s.num(st, marker, num, unit);
        s
    }

    /// Add a string label.
    pub(super) fn str(&mut self, st: &mut Strings, key: &str, value: &str) -> &mut Self {
        self.label.push(proto::Label {
            key: st.get(key),
            str: st.get(value),
            num: 0,
            num_unit: 0,
        });
        self
    }

    /// Add a number label (`unit` "" for none).
    pub(super) fn num(&mut self, st: &mut Strings, key: &str, num: i64, unit: &str) -> &mut Self {
        let num_unit = if unit.is_empty() { 0 } else { st.get(unit) };
        self.label.push(proto::Label {
            key: st.get(key),
            str: 0,
            num,
            num_unit,
        });
        self
    }

    /// The sample: its stack (location ids, leaf first) and values (all 0
    /// but for allocation sites).
    pub(super) fn finish(self, location_id: Vec<u64>, value: Vec<i64>) -> proto::Sample {
        proto::Sample {
            location_id,
            value,
            label: self.label,
        }
    }
}

/// The label keys the reader looks at on every sample, as small codes
/// (resolved once per string of the file's table, not per label).
pub(super) mod key {
    pub const OTHER: u8 = 0;
    pub const THREAD_NAME: u8 = 1;
    pub const THREAD_ID: u8 = 2;
    pub const NATIVE_ID: u8 = 3;
    pub const PID: u8 = 4;
    pub const PROCESS: u8 = 5;
    pub const PROCESS_ROLE: u8 = 6;
    pub const STATE: u8 = 7;
    pub const ENDPOINT: u8 = 8;
    pub const CATEGORY: u8 = 9;
    pub const TIMESTAMP: u8 = 10;
    pub const MEMORY: u8 = 11;
    pub const ALLOCATION: u8 = 12;
    pub const REQUEST: u8 = 13;

    /// The code of a key.
    pub fn of(name: &str) -> u8 {
        match name {
            "thread_name" => THREAD_NAME,
            "thread_id" => THREAD_ID,
            "native_id" => NATIVE_ID,
            "pid" => PID,
            "process" => PROCESS,
            "process_role" => PROCESS_ROLE,
            "state" => STATE,
            "endpoint" => ENDPOINT,
            "category" => CATEGORY,
            super::super::TIMESTAMP_LABEL => TIMESTAMP,
            super::super::MEMORY_LABEL => MEMORY,
            super::ALLOCATION_LABEL => ALLOCATION,
            "request" => REQUEST,
            _ => OTHER,
        }
    }
}

/// A sample's labels, resolved: (key code, key, string value, number).
#[derive(Default)]
pub(super) struct Labels<'a> {
    items: Vec<(u8, &'a str, &'a str, i64)>,
}

impl<'a> Labels<'a> {
    /// Forget the previous sample's labels (keeps the allocation).
    pub(super) fn clear(&mut self) {
        self.items.clear();
    }

    /// Add a label; `code` is `key::of(key)`.
    pub(super) fn push(&mut self, code: u8, key: &'a str, text: &'a str, num: i64) {
        self.items.push((code, key, text, num));
    }

    /// (key code, string value, number) of each label.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u8, &'a str, i64)> + '_ {
        self.items.iter().map(|&(c, _, t, n)| (c, t, n))
    }

    /// A string label's value by key code (empty values are absent).
    pub(super) fn str_of(&self, code: u8) -> Option<&'a str> {
        self.items
            .iter()
            .find(|(c, _, t, _)| *c == code && !t.is_empty())
            .map(|(_, _, t, _)| *t)
    }

    /// A string label's value (empty values are absent).
    pub(super) fn str(&self, key: &str) -> Option<&'a str> {
        self.items
            .iter()
            .find(|(_, k, t, _)| *k == key && !t.is_empty())
            .map(|(_, _, t, _)| *t)
    }

    /// A number label's value.
    pub(super) fn num(&self, key: &str) -> Option<i64> {
        self.items
            .iter()
            .find(|(_, k, _, _)| *k == key)
            .map(|(_, _, _, n)| *n)
    }

    /// What kind of side-channel sample this is, if it is one.
    pub(super) fn side(&self) -> Option<Side<'a>> {
        for &(c, _, t, n) in &self.items {
            match c {
                key::TIMESTAMP => return Some(Side::Timeline(n)),
                key::MEMORY => return Some(Side::Memory(t)),
                key::ALLOCATION => return Some(Side::Allocation(t)),
                _ => {}
            }
        }
        None
    }
}

/// A side-channel sample's kind, from its marker label.
pub(super) enum Side<'a> {
    /// A timeline entry, at this many nanoseconds since the start.
    Timeline(i64),
    /// Attach-mode memory: `reading`, `peak` or `growth`.
    Memory(&'a str),
    /// An allocation site: `attributed` or `stack not read`.
    Allocation(&'a str),
}
