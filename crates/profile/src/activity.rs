//! Activity: samples over time, per time bucket, per process, counts by thread state.
//! Buckets start one second wide; when a recording outgrows
//! [`MAX_BUCKETS`], neighbours merge and the width doubles, so memory stays
//! bounded however long the run.

use std::time::Duration;

use pyrometer_sampler::ThreadState;

/// The most buckets kept.
pub const MAX_BUCKETS: usize = 1024;

/// Counts by state, in the order of [`ACTIVITY_STATES`].
pub type StateCounts = [u64; 4];

/// The order of the counts of a bucket.
pub const ACTIVITY_STATES: [ThreadState; 4] = [
    ThreadState::Python,
    ThreadState::Native,
    ThreadState::GilWait,
    ThreadState::Idle,
];

fn state_slot(state: ThreadState) -> usize {
    match state {
        ThreadState::Python => 0,
        ThreadState::Native => 1,
        ThreadState::GilWait => 2,
        ThreadState::Idle => 3,
    }
}

/// Samples per time bucket, per process, by state.
#[derive(Debug, Clone)]
pub struct Activity {
    width: Duration,
    /// Bucket `i` covers `[i * width, (i + 1) * width)`; each holds
    /// (pid, counts) sorted by pid.
    buckets: Vec<Vec<(i32, StateCounts)>>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            width: Duration::from_secs(1),
            buckets: Vec::new(),
        }
    }
}

impl Activity {
    /// Count `count` samples of `pid` in `state` at `time` since the start.
    pub fn add(&mut self, time: Duration, pid: i32, state: ThreadState, count: u64) {
        let mut i = self.index(time);
        while i >= MAX_BUCKETS {
            self.coarsen();
            i = self.index(time);
        }
        if i >= self.buckets.len() {
            self.buckets.resize_with(i + 1, Vec::new);
        }
        let b = &mut self.buckets[i];
        let slot = match b.binary_search_by_key(&pid, |e| e.0) {
            Ok(s) => s,
            Err(s) => {
                b.insert(s, (pid, [0; 4]));
                s
            }
        };
        let c = &mut b[slot].1[state_slot(state)];
        *c = c.saturating_add(count);
    }

    fn index(&self, time: Duration) -> usize {
        let w = self.width.as_nanos().max(1);
        usize::try_from(time.as_nanos() / w).unwrap_or(usize::MAX)
    }

    /// Merge neighbouring buckets: twice the width, half the buckets.
    fn coarsen(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        let mut merged: Vec<Vec<(i32, StateCounts)>> = Vec::with_capacity(old.len() / 2 + 1);
        for pair in old.chunks(2) {
            let mut b: Vec<(i32, StateCounts)> = Vec::new();
            for (pid, counts) in pair.iter().flatten() {
                match b.binary_search_by_key(pid, |e| e.0) {
                    Ok(s) => {
                        for (x, y) in b[s].1.iter_mut().zip(counts) {
                            *x = x.saturating_add(*y);
                        }
                    }
                    Err(s) => b.insert(s, (*pid, *counts)),
                }
            }
            merged.push(b);
        }
        self.buckets = merged;
        self.width = self.width.saturating_mul(2);
    }

    /// The width of a bucket.
    pub fn width(&self) -> Duration {
        self.width
    }

    /// The buckets, earliest first: (pid, counts by state) sorted by pid.
    pub fn buckets(&self) -> &[Vec<(i32, StateCounts)>] {
        &self.buckets
    }

    /// A timeline as saved (for readers of saved profiles): `width` and
    /// (bucket index, pid, counts) entries. Entries beyond the bucket cap
    /// are coarsened like live ones.
    pub fn restore(width: Duration, entries: &[(usize, i32, StateCounts)]) -> Activity {
        let mut t = Activity {
            width: width.max(Duration::from_millis(1)),
            buckets: Vec::new(),
        };
        for &(i, pid, counts) in entries {
            let Some(time) = u32::try_from(i).ok().and_then(|i| t.width.checked_mul(i)) else {
                continue;
            };
            for (state, n) in ACTIVITY_STATES.iter().zip(counts) {
                if n > 0 {
                    t.add(time, pid, *state, n);
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_second_process_and_state() {
        let mut t = Activity::default();
        t.add(Duration::from_millis(100), 7, ThreadState::Python, 1);
        t.add(Duration::from_millis(900), 7, ThreadState::Idle, 2);
        t.add(Duration::from_millis(1500), 3, ThreadState::Native, 1);
        t.add(Duration::from_millis(1600), 7, ThreadState::GilWait, 1);
        assert_eq!(t.width(), Duration::from_secs(1));
        assert_eq!(
            t.buckets(),
            &[
                vec![(7, [1, 0, 0, 2])],
                vec![(3, [0, 1, 0, 0]), (7, [0, 0, 1, 0])]
            ]
        );
    }

    #[test]
    fn long_recordings_coarsen_and_stay_bounded() {
        let mut t = Activity::default();
        for s in 0..5000u64 {
            t.add(Duration::from_secs(s), 1, ThreadState::Python, 1);
        }
        assert!(t.buckets().len() <= MAX_BUCKETS);
        assert_eq!(t.width(), Duration::from_secs(8));
        let total: u64 = t.buckets().iter().flatten().map(|(_, c)| c[0]).sum();
        assert_eq!(total, 5000);
        // A restore of the buckets is the same timeline.
        let entries: Vec<_> = t
            .buckets()
            .iter()
            .enumerate()
            .flat_map(|(i, b)| b.iter().map(move |(pid, c)| (i, *pid, *c)))
            .collect();
        let r = Activity::restore(t.width(), &entries);
        assert_eq!(r.buckets(), t.buckets());
        assert_eq!(r.width(), t.width());
        // An absurd time does not allocate without bound.
        t.add(Duration::MAX, 1, ThreadState::Idle, 1);
        assert!(t.buckets().len() <= MAX_BUCKETS);
    }
}
