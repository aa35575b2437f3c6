//! Memory over time, per process, in attach mode: RSS and the pymalloc heap
//! read from outside every memory interval, the peak RSS with the stacks
//! sampled just before it, and growth attributed to stacks and endpoints.
//!
//! Attribution is an estimate: the bytes RSS grew between two readings are
//! split among the stacks sampled (on a CPU) in that interval, in
//! proportion to their samples. Code that allocates in short bursts, or
//! memory freed and reused, is not seen as such. Everything here is
//! bounded: a fixed number of points per process (older points are thinned
//! when full), a fixed number of processes.

use std::collections::BTreeMap;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::{StackId, StrId};

/// Points kept per process; when full, every other point is dropped and
/// only every other later reading is kept (the series stays evenly spread
/// over the whole run).
pub const MAX_POINTS_PER_PROCESS: usize = 2048;
/// Processes whose memory is followed.
pub const MAX_MEMORY_PROCESSES: usize = 1024;
/// Stacks kept for the peak.
pub const PEAK_STACKS_KEPT: usize = 5;

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryPoint {
    /// Time since the recording started.
    pub time: Duration,
    /// Resident set size, bytes.
    pub rss: Option<u64>,
    /// Bytes in pymalloc arenas in use.
    pub heap: Option<u64>,
}

/// A (stack, endpoint) and how many samples or bytes it had.
pub type StackShare = (Option<StackId>, Option<StrId>, u64);
/// Growth is attributed per (pid, stack, endpoint).
pub type GrowthKey = (i32, Option<StackId>, Option<StrId>);

/// The memory of one process.
#[derive(Debug, Clone)]
pub struct ProcessMemory {
    points: Vec<MemoryPoint>,
    stride: u64,
    readings: u64,
    /// Highest RSS seen and when.
    pub peak_rss: Option<(Duration, u64)>,
    /// Stacks sampled in the interval that ended at the peak, most samples
    /// first (at most [`PEAK_STACKS_KEPT`]).
    pub peak_stacks: Vec<StackShare>,
    /// Highest pymalloc heap seen.
    pub peak_heap: Option<u64>,
    /// The first and the last RSS read.
    pub first_rss: Option<u64>,
    /// The last RSS read.
    pub last_rss: Option<u64>,
    /// The last pymalloc heap read.
    pub last_heap: Option<u64>,
    /// Sum of the increases of RSS between readings (bytes).
    pub growth: u64,
    /// Why the pymalloc heap cannot be read in this process.
    pub heap_unavailable: Option<String>,
    /// Samples since the last reading: (stack, endpoint) → (on-CPU, all).
    interval: FxHashMap<(Option<StackId>, Option<StrId>), (u64, u64)>,
}

impl Default for ProcessMemory {
    fn default() -> Self {
        ProcessMemory {
            points: Vec::new(),
            stride: 1,
            readings: 0,
            peak_rss: None,
            peak_stacks: Vec::new(),
            peak_heap: None,
            first_rss: None,
            last_rss: None,
            last_heap: None,
            growth: 0,
            heap_unavailable: None,
            interval: FxHashMap::default(),
        }
    }
}

impl ProcessMemory {
    /// The series, in time order (bounded, see [`MAX_POINTS_PER_PROCESS`]).
    pub fn points(&self) -> &[MemoryPoint] {
        &self.points
    }

    fn push_point(&mut self, point: MemoryPoint) {
        self.readings = self.readings.saturating_add(1);
        if !self.readings.is_multiple_of(self.stride) {
            return;
        }
        if self.points.len() >= MAX_POINTS_PER_PROCESS {
            let mut i = 0;
            self.points.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride = self.stride.saturating_mul(2);
        }
        self.points.push(point);
    }
}

/// Memory of every process, and growth attributed to stacks and endpoints.
#[derive(Debug, Clone, Default)]
pub struct MemoryProfile {
    processes: BTreeMap<i32, ProcessMemory>,
    growth_by_stack: FxHashMap<GrowthKey, f64>,
    /// Growth seen in intervals with no sample on a CPU (bytes).
    pub unattributed_growth: u64,
    /// How often memory was read (for labels), if known.
    pub interval: Option<Duration>,
}

impl MemoryProfile {
    /// Whether any reading was recorded.
    pub fn is_empty(&self) -> bool {
        self.processes.values().all(|p| p.readings == 0)
    }

    fn process(&mut self, pid: i32) -> Option<&mut ProcessMemory> {
        if !self.processes.contains_key(&pid) && self.processes.len() >= MAX_MEMORY_PROCESSES {
            return None;
        }
        Some(self.processes.entry(pid).or_default())
    }

    /// Count a sample of `pid` in the current interval.
    pub fn observe(
        &mut self,
        pid: i32,
        stack: Option<StackId>,
        endpoint: Option<StrId>,
        on_cpu: bool,
    ) {
        // Only processes that have been read are followed (memory may be off).
        let Some(p) = self.processes.get_mut(&pid) else {
            return;
        };
        let e = p.interval.entry((stack, endpoint)).or_insert((0, 0));
        if on_cpu {
            e.0 += 1;
        }
        e.1 += 1;
    }

    /// Record a reading of `pid`: extends its series, updates its peak and
    /// splits any RSS growth since the last reading among the stacks
    /// sampled meanwhile.
    pub fn add_reading(
        &mut self,
        pid: i32,
        time: Duration,
        rss: Option<u64>,
        heap: Option<u64>,
        heap_unavailable: Option<&str>,
    ) {
        let Some(p) = self.process(pid) else {
            return;
        };
        if let Some(why) = heap_unavailable {
            if p.heap_unavailable.is_none() {
                p.heap_unavailable = Some(why.to_string());
            }
        }
        p.push_point(MemoryPoint { time, rss, heap });
        let interval = std::mem::take(&mut p.interval);
        if let Some(h) = heap {
            p.last_heap = Some(h);
            p.peak_heap = Some(p.peak_heap.map_or(h, |m| m.max(h)));
        }
        let Some(rss) = rss else {
            return;
        };
        if p.first_rss.is_none() {
            p.first_rss = Some(rss);
        }
        let grown = p.last_rss.map_or(0, |last| rss.saturating_sub(last));
        p.last_rss = Some(rss);
        if p.peak_rss.is_none_or(|(_, peak)| rss > peak) {
            p.peak_rss = Some((time, rss));
            if !interval.is_empty() {
                // The samples nearest the peak: on a CPU if any, else all.
                let any_cpu = interval.values().any(|c| c.0 > 0);
                let mut v: Vec<StackShare> = interval
                    .iter()
                    .map(|((s, e), c)| (*s, *e, if any_cpu { c.0 } else { c.1 }))
                    .filter(|x| x.2 > 0)
                    .collect();
                v.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
                v.truncate(PEAK_STACKS_KEPT);
                p.peak_stacks = v;
            }
        }
        if grown == 0 {
            return;
        }
        p.growth = p.growth.saturating_add(grown);
        let on_cpu: u64 = interval.values().map(|c| c.0).sum();
        if on_cpu == 0 {
            self.unattributed_growth = self.unattributed_growth.saturating_add(grown);
            return;
        }
        for ((stack, endpoint), (cpu, _)) in interval {
            if cpu > 0 {
                *self
                    .growth_by_stack
                    .entry((pid, stack, endpoint))
                    .or_insert(0.0) += grown as f64 * cpu as f64 / on_cpu as f64;
            }
        }
    }

    /// Add growth attributed to a stack directly (readers of saved
    /// profiles): bytes as estimated, unrounded.
    pub fn add_growth(
        &mut self,
        pid: i32,
        stack: Option<StackId>,
        endpoint: Option<StrId>,
        bytes: f64,
    ) {
        *self
            .growth_by_stack
            .entry((pid, stack, endpoint))
            .or_insert(0.0) += bytes;
    }

    /// The growth attributed to one (pid, stack, endpoint), unrounded.
    pub fn growth_estimate(&self, key: &GrowthKey) -> f64 {
        self.growth_by_stack.get(key).copied().unwrap_or(0.0)
    }

    /// Add a point of a saved series as it was (readers of saved profiles):
    /// no growth is computed from it.
    pub fn restore_reading(
        &mut self,
        pid: i32,
        time: Duration,
        rss: Option<u64>,
        heap: Option<u64>,
    ) {
        let Some(p) = self.process(pid) else {
            return;
        };
        if p.points.len() < MAX_POINTS_PER_PROCESS {
            p.points.push(MemoryPoint { time, rss, heap });
        }
        p.readings = p.readings.saturating_add(1);
        if let Some(r) = rss {
            p.first_rss.get_or_insert(r);
            p.last_rss = Some(r);
            if p.peak_rss.is_none_or(|(_, peak)| r > peak) {
                p.peak_rss = Some((time, r));
            }
        }
        if let Some(h) = heap {
            p.last_heap = Some(h);
            p.peak_heap = Some(p.peak_heap.map_or(h, |m| m.max(h)));
        }
    }

    /// Set a process's total growth (readers of saved profiles).
    pub fn set_growth(&mut self, pid: i32, bytes: u64) {
        if let Some(p) = self.process(pid) {
            p.growth = bytes;
        }
    }

    /// Set why a process's heap could not be read (readers of saved profiles).
    pub fn restore_reading_note(&mut self, pid: i32, why: &str) {
        if let Some(p) = self.process(pid) {
            p.heap_unavailable = Some(why.to_string());
        }
    }

    /// Set a process's peak and the stacks at it (readers of saved profiles).
    pub fn set_peak(&mut self, pid: i32, time: Duration, rss: u64, stacks: Vec<StackShare>) {
        if let Some(p) = self.process(pid) {
            if p.peak_rss.is_none_or(|(_, peak)| rss >= peak) {
                p.peak_rss = Some((time, rss));
                p.peak_stacks = stacks;
            }
        }
    }

    /// Every process followed, by pid.
    pub fn processes(&self) -> impl Iterator<Item = (i32, &ProcessMemory)> {
        self.processes.iter().map(|(pid, p)| (*pid, p))
    }

    /// One process.
    pub fn process_memory(&self, pid: i32) -> Option<&ProcessMemory> {
        self.processes.get(&pid)
    }

    /// Estimated growth per (pid, stack, endpoint), bytes, largest first.
    pub fn growth_by_stack(&self) -> Vec<(GrowthKey, u64)> {
        let mut v: Vec<_> = self
            .growth_by_stack
            .iter()
            .map(|(k, b)| (*k, b.round() as u64))
            .filter(|(_, b)| *b > 0)
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Estimated growth per endpoint (`None`: outside any request), bytes,
    /// largest first.
    pub fn growth_by_endpoint(&self) -> Vec<(Option<StrId>, u64)> {
        let mut m: BTreeMap<Option<StrId>, f64> = BTreeMap::new();
        for ((_, _, e), b) in &self.growth_by_stack {
            *m.entry(*e).or_insert(0.0) += b;
        }
        let mut v: Vec<_> = m
            .into_iter()
            .map(|(e, b)| (e, b.round() as u64))
            .filter(|(_, b)| *b > 0)
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Growth attributed to stacks, bytes.
    pub fn attributed_growth(&self) -> u64 {
        self.growth_by_stack.values().sum::<f64>().round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn growth_is_split_by_samples_in_the_interval() {
        let mut m = MemoryProfile::default();
        let (grow, steady) = (Some(StackId(1)), Some(StackId(2)));
        m.add_reading(1, Duration::ZERO, Some(100 * MIB), Some(MIB), None);
        for _ in 0..3 {
            m.observe(1, grow, None, true);
        }
        m.observe(1, steady, None, true);
        m.observe(1, steady, None, false); // idle: not counted for growth
        m.add_reading(1, Duration::from_millis(100), Some(140 * MIB), None, None);
        // A shrink grows nothing; growth with no on-CPU sample is unattributed.
        m.observe(1, steady, None, true);
        m.add_reading(1, Duration::from_millis(200), Some(120 * MIB), None, None);
        m.observe(1, steady, None, false);
        m.add_reading(1, Duration::from_millis(300), Some(130 * MIB), None, None);
        let g = m.growth_by_stack();
        assert_eq!(g[0], ((1, grow, None), 30 * MIB));
        assert_eq!(g[1], ((1, steady, None), 10 * MIB));
        assert_eq!(m.unattributed_growth, 10 * MIB);
        let p = m.process_memory(1).unwrap();
        assert_eq!(p.peak_rss, Some((Duration::from_millis(100), 140 * MIB)));
        assert_eq!(p.peak_stacks, vec![(grow, None, 3), (steady, None, 1)]);
        assert_eq!(p.growth, 50 * MIB);
        assert_eq!(p.points().len(), 4);
        assert_eq!(p.last_heap, Some(MIB));
        assert_eq!(m.growth_by_endpoint(), vec![(None, 40 * MIB)]);
    }

    #[test]
    fn the_series_stays_bounded_and_spread() {
        let mut m = MemoryProfile::default();
        let n = MAX_POINTS_PER_PROCESS as u64 * 5;
        for i in 0..n {
            m.add_reading(7, Duration::from_millis(i), Some(i), None, None);
        }
        let p = m.process_memory(7).unwrap();
        assert!(p.points().len() <= MAX_POINTS_PER_PROCESS);
        assert!(p.points().len() >= MAX_POINTS_PER_PROCESS / 4);
        let last = p.points().last().unwrap().time;
        assert!(last >= Duration::from_millis(n - 8), "{last:?}");
        assert!(p.points().windows(2).all(|w| w[0].time < w[1].time));
    }

    #[test]
    fn samples_of_unread_processes_are_ignored_and_processes_are_bounded() {
        let mut m = MemoryProfile::default();
        m.observe(3, None, None, true);
        assert!(m.is_empty());
        for pid in 0..(MAX_MEMORY_PROCESSES as i32 + 10) {
            m.add_reading(pid, Duration::ZERO, Some(1), None, None);
        }
        assert_eq!(m.processes().count(), MAX_MEMORY_PROCESSES);
    }
}
