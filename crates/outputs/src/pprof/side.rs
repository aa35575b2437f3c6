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

/// A sample's labels, resolved: (key, string value, number).
#[derive(Default)]
pub(super) struct Labels<'a> {
    items: Vec<(&'a str, &'a str, i64)>,
}

impl<'a> Labels<'a> {
    /// Forget the previous sample's labels (keeps the allocation).
    pub(super) fn clear(&mut self) {
        self.items.clear();
    }

    pub(super) fn push(&mut self, key: &'a str, text: &'a str, num: i64) {
        self.items.push((key, text, num));
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &(&'a str, &'a str, i64)> {
        self.items.iter()
    }

    /// A string label's value (empty values are absent).
    pub(super) fn str(&self, key: &str) -> Option<&'a str> {
        self.items
            .iter()
            .find(|(k, t, _)| *k == key && !t.is_empty())
            .map(|(_, t, _)| *t)
    }

    /// A number label's value.
    pub(super) fn num(&self, key: &str) -> Option<i64> {
        self.items
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, n)| *n)
    }

    /// What kind of side-channel sample this is, if it is one.
    pub(super) fn side(&self) -> Option<Side<'a>> {
        for &(k, t, n) in &self.items {
            match k {
                super::TIMESTAMP_LABEL => return Some(Side::Timeline(n)),
                super::MEMORY_LABEL => return Some(Side::Memory(t)),
                ALLOCATION_LABEL => return Some(Side::Allocation(t)),
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
