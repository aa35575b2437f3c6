//! Sampled allocations (`record --memory`): estimated bytes allocated and
//! live per site (stack and endpoint), live bytes over time per site, and
//! leak candidates: sites whose live bytes grow steadily through the run.
//! Bounded: sites are aggregated, series have a fixed number of buckets,
//! live blocks are capped.

use std::time::Duration;

use rustc_hash::FxHashMap;

use pyrometer_sampler::MemoryEvent;

use crate::{FrameId, FrameInfo, Profile, StackId, StackNode, StrId};

/// Most buckets of a live-bytes series; the bucket width doubles beyond.
pub const MAX_BUCKETS: usize = 128;
/// Most sampled blocks tracked live at once.
const MAX_LIVE_BLOCKS: usize = 1 << 20;
/// Most sites kept; later new sites are counted as unattributed.
const MAX_SITES: usize = 1 << 16;
/// Leak candidates need at least this many buckets of history.
const MIN_BUCKETS_FOR_LEAK: usize = 6;

/// Where sampled bytes were allocated: the stack (innermost node; `None`:
/// the stack could not be read) and the endpoint being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllocationSite {
    /// Innermost stack node.
    pub stack: Option<StackId>,
    /// Endpoint of the request being served.
    pub endpoint: Option<StrId>,
}

/// Estimates for one site.
#[derive(Debug, Clone, Default)]
pub struct SiteStats {
    /// Estimated bytes allocated.
    pub alloc_bytes: f64,
    /// Estimated allocations.
    pub alloc_objects: f64,
    /// Samples taken here.
    pub samples: u64,
    /// Estimated bytes still live (allocated, not freed).
    pub live_bytes: f64,
    /// Estimated allocations still live.
    pub live_objects: f64,
    /// Live bytes at the end of each bucket of [`Allocations::bucket_width`].
    pub live_series: Vec<f64>,
}

#[derive(Debug, Clone, Copy)]
struct LiveBlock {
    site: AllocationSite,
    bytes: f64,
    objects: f64,
}

/// A site whose live bytes grow steadily.
#[derive(Debug, Clone)]
pub struct LeakCandidate {
    /// The site.
    pub site: AllocationSite,
    /// 0..1: how steadily live bytes grew (fit of a line × share of
    /// buckets that did not shrink).
    pub score: f64,
    /// Estimated live bytes at the peak (near the end: a process frees
    /// everything as it exits).
    pub live_bytes: f64,
    /// Estimated growth, bytes per second.
    pub growth_per_sec: f64,
}

/// The allocation profile.
#[derive(Debug, Clone, Default)]
pub struct Allocations {
    /// Recorded with `--memory`.
    pub enabled: bool,
    /// Mean bytes between samples.
    pub mean_bytes: u64,
    sites: FxHashMap<AllocationSite, SiteStats>,
    live: FxHashMap<(i32, u64), LiveBlock>,
    bucket_width: Duration,
    last_time: Duration,
    /// Estimated bytes of allocations whose stack could not be read.
    pub unattributed_bytes: f64,
    /// Sampled blocks not tracked (live table full).
    pub untracked_blocks: u64,
    /// Estimated bytes allocated per process (bounded).
    pub by_process: std::collections::BTreeMap<i32, f64>,
}

/// Most processes counted in [`Allocations::by_process`].
const MAX_PROCESSES: usize = 4096;

impl Allocations {
    /// Per-site estimates.
    pub fn sites(&self) -> impl Iterator<Item = (&AllocationSite, &SiteStats)> {
        self.sites.iter()
    }

    /// Add a site's estimates (readers of saved profiles; a site given
    /// twice adds up).
    pub fn restore_site(&mut self, site: AllocationSite, stats: SiteStats) {
        if self.sites.len() >= MAX_SITES && !self.sites.contains_key(&site) {
            return;
        }
        let s = self.sites.entry(site).or_default();
        s.alloc_bytes += stats.alloc_bytes;
        s.alloc_objects += stats.alloc_objects;
        s.samples += stats.samples;
        s.live_bytes += stats.live_bytes;
        s.live_objects += stats.live_objects;
        if s.live_series.len() < stats.live_series.len() {
            s.live_series.resize(stats.live_series.len(), 0.0);
        }
        for (a, b) in s.live_series.iter_mut().zip(&stats.live_series) {
            *a += b;
        }
    }

    /// Set the width of a bucket of the live series (readers of saved
    /// profiles).
    pub fn set_bucket_width(&mut self, width: Duration) {
        self.bucket_width = width;
    }

    /// Width of a bucket of the live series.
    pub fn bucket_width(&self) -> Duration {
        if self.bucket_width.is_zero() {
            Duration::from_secs(1)
        } else {
            self.bucket_width
        }
    }

    /// Estimated bytes allocated in all.
    pub fn total_bytes(&self) -> f64 {
        self.sites.values().map(|s| s.alloc_bytes).sum::<f64>()
    }

    /// Estimated bytes allocated at sites with a stack.
    pub fn attributed_bytes(&self) -> f64 {
        self.sites
            .iter()
            .filter(|(k, _)| k.stack.is_some())
            .map(|(_, s)| s.alloc_bytes)
            .sum::<f64>()
    }

    fn bucket(&mut self, time: Duration) -> usize {
        let width = self.bucket_width();
        self.bucket_width = width;
        let mut b = (time.as_nanos() / width.as_nanos().max(1)) as usize;
        while b >= MAX_BUCKETS {
            self.bucket_width = self.bucket_width.saturating_mul(2);
            for s in self.sites.values_mut() {
                // A bucket's value is the live bytes at its end: keep the
                // later of each pair.
                let merged: Vec<f64> = s
                    .live_series
                    .chunks(2)
                    .map(|c| c.last().copied().unwrap_or(0.0))
                    .collect();
                s.live_series = merged;
            }
            b = (time.as_nanos() / self.bucket_width.as_nanos().max(1)) as usize;
        }
        b
    }

    fn record_live(stats: &mut SiteStats, bucket: usize) {
        let last = stats.live_series.last().copied().unwrap_or(0.0);
        if stats.live_series.len() <= bucket {
            stats.live_series.resize(bucket + 1, last);
        }
        if let Some(v) = stats.live_series.get_mut(bucket) {
            *v = stats.live_bytes.max(0.0);
        }
    }

    fn alloc(
        &mut self,
        site: AllocationSite,
        time: Duration,
        pid: i32,
        addr: u64,
        size: u64,
        bytes: f64,
    ) {
        let b = self.bucket(time);
        self.last_time = self.last_time.max(time);
        let site = if self.sites.len() >= MAX_SITES && !self.sites.contains_key(&site) {
            AllocationSite {
                stack: None,
                endpoint: None,
            }
        } else {
            site
        };
        if self.by_process.len() < MAX_PROCESSES || self.by_process.contains_key(&pid) {
            *self.by_process.entry(pid).or_default() += bytes;
        }
        let objects = if size > 0 { bytes / size as f64 } else { 1.0 };
        let stats = self.sites.entry(site).or_default();
        stats.alloc_bytes += bytes;
        stats.alloc_objects += objects;
        stats.samples += 1;
        if site.stack.is_none() {
            self.unattributed_bytes += bytes;
        }
        if self.live.len() < MAX_LIVE_BLOCKS {
            stats.live_bytes += bytes;
            stats.live_objects += objects;
            Self::record_live(stats, b);
            // A reused address whose free was lost: the old block is gone.
            if let Some(old) = self.live.insert(
                (pid, addr),
                LiveBlock {
                    site,
                    bytes,
                    objects,
                },
            ) {
                self.release(old, b);
            }
        } else {
            self.untracked_blocks += 1;
        }
    }

    fn release(&mut self, block: LiveBlock, bucket: usize) {
        if let Some(s) = self.sites.get_mut(&block.site) {
            s.live_bytes = (s.live_bytes - block.bytes).max(0.0);
            s.live_objects = (s.live_objects - block.objects).max(0.0);
            Self::record_live(s, bucket);
        }
    }

    fn free(&mut self, time: Duration, pid: i32, addr: u64) {
        let b = self.bucket(time);
        self.last_time = self.last_time.max(time);
        if let Some(block) = self.live.remove(&(pid, addr)) {
            self.release(block, b);
        }
    }

    /// Blocks of a process that exited are no longer live.
    pub fn process_exited(&mut self, pid: i32, time: Duration) {
        let b = self.bucket(time);
        let gone: Vec<(i32, u64)> = self.live.keys().filter(|k| k.0 == pid).copied().collect();
        for k in gone {
            if let Some(block) = self.live.remove(&k) {
                self.release(block, b);
            }
        }
    }

    /// Extend every series to the end of the recording.
    pub fn finish(&mut self, end: Duration) {
        let end = end.max(self.last_time);
        let b = self.bucket(end);
        for s in self.sites.values_mut() {
            Self::record_live(s, b);
        }
    }

    /// Sites whose live bytes grew steadily, most likely first. Needs
    /// [`Self::finish`] first.
    pub fn leak_candidates(&self) -> Vec<LeakCandidate> {
        let width = self.bucket_width().as_secs_f64();
        let mut out: Vec<LeakCandidate> = self
            .sites
            .iter()
            .filter(|(k, _)| k.stack.is_some())
            .filter_map(|(site, s)| {
                let score = leak_score(&s.live_series, self.mean_bytes as f64)?;
                let first = s.live_series.iter().position(|v| *v > 0.0).unwrap_or(0);
                let (peak_at, peak) = s
                    .live_series
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, v)| (i, *v))
                    .unwrap_or((0, 0.0));
                let buckets = peak_at.saturating_sub(first).max(1) as f64;
                Some(LeakCandidate {
                    site: *site,
                    score,
                    live_bytes: peak,
                    growth_per_sec: peak / (buckets * width).max(1e-9),
                })
            })
            .filter(|c| c.score >= LEAK_THRESHOLD)
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score));
        out
    }
}

/// Score from which a site is reported as a leak candidate.
pub const LEAK_THRESHOLD: f64 = 0.6;

/// How steadily `series` grows, 0..1; `None` when it does not grow enough to
/// tell (fewer than [`MIN_BUCKETS_FOR_LEAK`] buckets, or less than doubling
/// over the last three quarters, or less than four samples' worth).
pub fn leak_score(series: &[f64], mean_bytes: f64) -> Option<f64> {
    // From the first bucket where the site had anything live, to the peak
    // if it is near the end: a process frees everything as it exits.
    let start = series.iter().position(|v| *v > 0.0)?;
    let s = series.get(start..)?;
    let peak = s
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)?;
    let s = if peak * 5 >= s.len().saturating_sub(1) * 4 {
        s.get(..=peak)?
    } else {
        s
    };
    if s.len() < MIN_BUCKETS_FOR_LEAK {
        return None;
    }
    let quarter = s.get(s.len() / 4).copied()?;
    let last = s.last().copied()?;
    if last < 2.0 * quarter || last - quarter < 4.0 * mean_bytes {
        return None;
    }
    let n = s.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = s.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (i, y) in s.iter().enumerate() {
        let dx = i as f64 - mean_x;
        let dy = y - mean_y;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 || sxy <= 0.0 {
        return None;
    }
    let r2 = (sxy * sxy) / (sxx * syy);
    // Steps that did not shrink by more than one sample's worth.
    let steps = s.windows(2).count().max(1) as f64;
    let kept = s
        .windows(2)
        .filter(|w| {
            w.get(1).copied().unwrap_or(0.0) + mean_bytes >= w.first().copied().unwrap_or(0.0)
        })
        .count() as f64;
    Some((r2 * kept / steps).clamp(0.0, 1.0))
}

impl Profile {
    /// The allocation profile (empty unless recorded with `--memory`).
    pub fn allocations(&self) -> &Allocations {
        &self.allocations
    }

    /// The allocation profile, to set it up or finish it.
    pub fn allocations_mut(&mut self) -> &mut Allocations {
        &mut self.allocations
    }

    /// Add an event of the allocation sampler.
    pub fn add_memory_event(&mut self, event: &MemoryEvent) {
        match event {
            MemoryEvent::Alloc {
                time,
                pid,
                addr,
                size,
                bytes,
                sample,
            } => {
                let site = match sample {
                    Some(s) => {
                        let mut parent = None;
                        for f in s.frames.iter().rev() {
                            let info = FrameInfo {
                                name: self.intern(&f.name),
                                filename: self.intern(&f.filename),
                                line: f.line,
                                first_line: f.first_line,
                            };
                            let frame: FrameId = self.frame_id(info);
                            parent = Some(self.stack_id(StackNode { parent, frame }));
                        }
                        let endpoint = s.request.as_ref().map(|r| self.intern(&r.endpoint));
                        AllocationSite {
                            stack: parent,
                            endpoint,
                        }
                    }
                    None => AllocationSite {
                        stack: None,
                        endpoint: None,
                    },
                };
                self.allocations
                    .alloc(site, *time, *pid, *addr, *size, *bytes);
            }
            MemoryEvent::Free { time, pid, addr } => self.allocations.free(*time, *pid, *addr),
            MemoryEvent::Exited { time, pid } => self.allocations.process_exited(*pid, *time),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_growth_scores_high_and_churn_does_not_score() {
        let mean = 512.0 * 1024.0;
        let growing: Vec<f64> = (0..40).map(|i| i as f64 * 2.0 * mean).collect();
        assert!(leak_score(&growing, mean).unwrap() > 0.9);
        let churn: Vec<f64> = (0..40)
            .map(|i| if i % 3 == 0 { mean } else { 0.0 })
            .collect();
        assert!(leak_score(&churn, mean).is_none_or(|s| s < LEAK_THRESHOLD));
        let flat: Vec<f64> = (0..40).map(|_| 8.0 * mean).collect();
        assert!(leak_score(&flat, mean).is_none());
        // Freed at exit: the growth before still counts.
        let mut freed_at_exit = growing.clone();
        freed_at_exit.push(0.0);
        assert!(leak_score(&freed_at_exit, mean).unwrap() > 0.9);
        let short = [mean, 2.0 * mean, 3.0 * mean];
        assert!(leak_score(&short, mean).is_none());
    }

    #[test]
    fn frees_release_live_bytes_and_series_stay_bounded() {
        let mut a = Allocations {
            mean_bytes: 1024,
            ..Default::default()
        };
        let site = AllocationSite {
            stack: Some(StackId(0)),
            endpoint: None,
        };
        for i in 0..10_000u64 {
            let t = Duration::from_millis(i * 100);
            a.alloc(site, t, 1, i, 100, 1000.0);
            if i % 2 == 0 {
                a.free(t, 1, i);
            }
        }
        a.finish(Duration::from_secs(1000));
        let s = a.sites.get(&site).unwrap();
        assert_eq!(s.alloc_bytes, 10_000_000.0);
        assert_eq!(s.live_bytes, 5_000_000.0);
        assert!(s.live_series.len() <= MAX_BUCKETS);
        assert!(a.leak_candidates().len() == 1);
        a.process_exited(1, Duration::from_secs(1000));
        assert_eq!(a.sites.get(&site).unwrap().live_bytes, 0.0);
    }
}
