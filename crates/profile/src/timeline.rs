//! The first samples in time order, for outputs that draw a timeline
//! (Chrome trace). The profile aggregates everything else; this keeps at
//! most `limit` entries and counts the ones it had to leave out, so memory
//! stays bounded however long the run.

use std::time::Duration;

use pyrometer_sampler::ThreadState;

use crate::{StackId, StrId, ThreadKey};

/// Samples kept in the timeline unless told otherwise (at most 14 MB).
pub const DEFAULT_TIMELINE_LIMIT: usize = 250_000;

/// One sample of one thread at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineEntry {
    /// Time since the recording started.
    pub time: Duration,
    /// The thread.
    pub thread: ThreadKey,
    /// The innermost stack node (`None`: no Python frames).
    pub stack: Option<StackId>,
    /// What the thread was doing.
    pub state: ThreadState,
    /// The endpoint of the request being served, if any.
    pub endpoint: Option<StrId>,
    /// Identity of that request: consecutive samples of a thread with the
    /// same key saw the same request.
    pub request: Option<u64>,
}

/// The bounded timeline.
#[derive(Debug, Clone)]
pub struct Timeline {
    entries: Vec<TimelineEntry>,
    limit: usize,
    /// Whether samples of idle threads are kept (a service's many idle
    /// threads would otherwise fill it).
    pub keep_idle: bool,
    /// Samples left out because the timeline was full.
    pub dropped: u64,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            entries: Vec::new(),
            limit: DEFAULT_TIMELINE_LIMIT,
            keep_idle: true,
            dropped: 0,
        }
    }
}

impl Timeline {
    /// Keep at most `limit` entries (0: keep none). Entries already kept
    /// beyond the new limit are dropped and counted.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        if self.entries.len() > limit {
            self.dropped = self
                .dropped
                .saturating_add((self.entries.len() - limit) as u64);
            self.entries.truncate(limit);
        }
    }

    /// The most entries kept.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Add an entry, or count it as dropped when full. Idle entries are
    /// ignored (not counted) unless `keep_idle`.
    pub fn push(&mut self, entry: TimelineEntry) {
        if entry.state == ThreadState::Idle && !self.keep_idle {
            return;
        }
        if self.entries.len() < self.limit {
            self.entries.push(entry);
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    /// The entries, in the order they were sampled.
    pub fn entries(&self) -> &[TimelineEntry] {
        &self.entries
    }

    /// Whether samples were left out.
    pub fn was_cut(&self) -> bool {
        self.dropped > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ms: u64) -> TimelineEntry {
        TimelineEntry {
            time: Duration::from_millis(ms),
            thread: ThreadKey(0),
            stack: None,
            state: ThreadState::Python,
            endpoint: None,
            request: None,
        }
    }

    #[test]
    fn keeps_the_first_entries_and_counts_the_rest() {
        let mut t = Timeline::default();
        t.set_limit(3);
        for i in 0..5 {
            t.push(entry(i));
        }
        assert_eq!(t.entries().len(), 3);
        assert_eq!(t.entries()[2].time, Duration::from_millis(2));
        assert_eq!(t.dropped, 2);
        assert!(t.was_cut());
        t.set_limit(1);
        assert_eq!((t.entries().len(), t.dropped), (1, 4));
        let mut t = Timeline {
            keep_idle: false,
            ..Timeline::default()
        };
        t.push(TimelineEntry {
            state: ThreadState::Idle,
            ..entry(1)
        });
        t.push(entry(2));
        assert_eq!((t.entries().len(), t.dropped), (1, 0));
    }

    #[test]
    fn the_default_limit_bounds_memory() {
        // What the README and the flag's help promise.
        let bytes = DEFAULT_TIMELINE_LIMIT * std::mem::size_of::<TimelineEntry>();
        assert!(bytes <= 16 << 20, "{bytes} bytes");
    }
}
