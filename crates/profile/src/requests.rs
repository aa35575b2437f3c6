//! Requests over time: consecutive samples of one thread that see the same
//! request are one request, and so are samples of other threads of the
//! same process that see it within a few sampling periods (a sync endpoint
//! runs in a thread pool while its event loop routes the request and sends
//! the response; an async request interleaves with others on its loop).
//! Each request's duration is estimated from the first and last sample that
//! saw it (plus one sampling period); per endpoint, counts, a bounded
//! reservoir of durations and the slowest requests with their own stacks
//! are kept. Memory is bounded however long the run.

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::{StackId, StrId, ThreadKey};

/// Durations kept per endpoint for percentiles (a reservoir beyond that).
const RESERVOIR: usize = 4096;
/// Slowest requests kept per endpoint.
pub const SLOWEST_KEPT: usize = 5;
/// Distinct stacks kept per open request.
const STACKS_PER_REQUEST: usize = 64;
/// Endpoints tracked; later ones are folded into one bucket.
const MAX_ENDPOINTS: usize = 2000;
/// Sampling periods a request may go unseen and still be the same request
/// when a sample sees it again (on any thread of its process).
const GRACE_PERIODS: u32 = 5;
/// Requests waiting out their grace (beyond that they are recorded at once).
const MAX_CLOSING: usize = 4096;
/// Raw paths interned for kept (slowest) requests over a whole run: raw
/// paths are high-cardinality (ids, query strings), so an open request
/// holds its path uninterned and only a request entering the slowest is
/// interned; this caps even a run whose requests keep getting slower.
pub const MAX_PATHS_KEPT: usize = 10_000;
/// Label of endpoints beyond [`MAX_ENDPOINTS`].
pub const OVERFLOW_ENDPOINT: &str = "(other endpoints)";
/// Path of kept requests beyond [`MAX_PATHS_KEPT`].
pub const PATH_NOT_KEPT: &str = "(path not kept)";

/// A finished request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Endpoint label.
    pub endpoint: StrId,
    /// Raw path.
    pub path: StrId,
    /// The thread that served it.
    pub thread: ThreadKey,
    /// When it was first seen.
    pub start: Duration,
    /// Estimated duration.
    pub duration: Duration,
    /// Samples that saw it.
    pub samples: u64,
    /// Its stacks with their sample counts.
    pub stacks: Vec<(Option<StackId>, u64)>,
}

/// Per-endpoint request statistics.
#[derive(Debug, Clone, Default)]
pub struct EndpointRequests {
    /// Requests seen.
    pub count: u64,
    /// Sum of estimated durations.
    pub total: Duration,
    /// Longest estimated duration.
    pub max: Duration,
    durations: Vec<Duration>,
    seen_for_reservoir: u64,
    /// The slowest requests, slowest first.
    pub slowest: Vec<Request>,
}

impl EndpointRequests {
    /// The q-quantile (0..=1) of estimated durations.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.durations.is_empty() {
            return None;
        }
        let mut d = self.durations.clone();
        d.sort_unstable();
        let i = ((d.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        d.get(i).copied()
    }

    /// Statistics as saved (for readers of saved profiles): the
    /// reservoir of durations is kept as given, up to its bound.
    pub fn from_saved(
        count: u64,
        total: Duration,
        max: Duration,
        mut durations: Vec<Duration>,
    ) -> Self {
        durations.truncate(RESERVOIR);
        EndpointRequests {
            count,
            total,
            max,
            seen_for_reservoir: count.max(durations.len() as u64),
            durations,
            slowest: Vec::new(),
        }
    }

    /// The reservoir of estimated durations (for writers of saved profiles).
    pub fn durations(&self) -> &[Duration] {
        &self.durations
    }

    fn record_duration(&mut self, duration: Duration) {
        self.count += 1;
        self.total += duration;
        self.max = self.max.max(duration);
        self.seen_for_reservoir += 1;
        if self.durations.len() < RESERVOIR {
            self.durations.push(duration);
        } else {
            // Deterministic reservoir replacement keeps memory bounded and
            // the sample of durations uniform enough for percentiles.
            let slot = (self.seen_for_reservoir.wrapping_mul(2654435761) % self.seen_for_reservoir)
                as usize;
            if slot < RESERVOIR {
                self.durations[slot] = duration;
            }
        }
    }

    fn would_keep(&self, duration: Duration) -> bool {
        self.slowest.len() < SLOWEST_KEPT
            || self.slowest.last().is_some_and(|s| s.duration < duration)
    }

    fn keep_slowest(&mut self, r: Request) {
        self.slowest.push(r);
        self.slowest.sort_by_key(|r| std::cmp::Reverse(r.duration));
        self.slowest.truncate(SLOWEST_KEPT);
    }
}

#[derive(Debug, Clone)]
struct Open {
    pid: i32,
    key: u64,
    endpoint: StrId,
    path: Arc<str>,
    first: Duration,
    last: Duration,
    samples: u64,
    stacks: FxHashMap<Option<StackId>, u64>,
}

/// Tracks open requests per thread and closes them into per-endpoint stats.
#[derive(Debug, Clone, Default)]
pub struct RequestTracker {
    open: FxHashMap<ThreadKey, Open>,
    endpoints: FxHashMap<StrId, EndpointRequests>,
    overflow: Option<StrId>,
    /// Requests no thread sees any more, by (process, key), with the thread
    /// that saw them last: recorded once their grace is over, or taken up
    /// again by a thread that sees them.
    closing: FxHashMap<(i32, u64), (ThreadKey, Open)>,
    next_flush: Duration,
    paths_kept: usize,
    /// The sampling period, added to each request's first-to-last span.
    pub period: Duration,
}

impl Open {
    /// Fold `other` (the same request, seen elsewhere) into this one.
    fn absorb(&mut self, other: Open) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.samples += other.samples;
        for (stack, n) in other.stacks {
            if self.stacks.len() < STACKS_PER_REQUEST || self.stacks.contains_key(&stack) {
                *self.stacks.entry(stack).or_insert(0) += n;
            }
        }
    }
}

impl RequestTracker {
    /// A thread of process `pid` was sampled at `time` serving request `key`
    /// (or none, when `request` is `None`; `known` false means the stack was
    /// not read, so whatever was open stays open). `intern` interns the
    /// strings kept.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn observe(
        &mut self,
        thread: ThreadKey,
        pid: i32,
        time: Duration,
        known: bool,
        request: Option<(u64, StrId, &Arc<str>)>,
        stack: Option<StackId>,
        mut intern: impl FnMut(&str) -> StrId,
    ) {
        if time >= self.next_flush {
            self.flush(time, &mut intern);
            self.next_flush = time + self.period.max(Duration::from_millis(1));
        }
        if !known {
            return;
        }
        match (self.open.get_mut(&thread), request) {
            (Some(o), Some((key, endpoint, _))) if o.key == key && o.pid == pid => {
                o.last = time;
                o.samples += 1;
                // A request's name settles once its view was seen.
                o.endpoint = endpoint;
                if o.stacks.len() < STACKS_PER_REQUEST || o.stacks.contains_key(&stack) {
                    *o.stacks.entry(stack).or_insert(0) += 1;
                }
            }
            (_, req) => {
                self.close(thread, &mut intern);
                if let Some((key, endpoint, path)) = req {
                    let path = Arc::clone(path);
                    let mut stacks = FxHashMap::default();
                    stacks.insert(stack, 1);
                    let mut open = Open {
                        pid,
                        key,
                        endpoint,
                        path,
                        first: time,
                        last: time,
                        samples: 1,
                        stacks,
                    };
                    if let Some((_, earlier)) = self.closing.remove(&(pid, key)) {
                        open.absorb(earlier);
                    }
                    self.open.insert(thread, open);
                }
            }
        }
    }

    fn grace(&self) -> Duration {
        self.period * GRACE_PERIODS
    }

    /// The request open on `thread` is no longer seen there: fold it into
    /// the same request open on another thread of its process, or let it
    /// wait out its grace.
    fn close(&mut self, thread: ThreadKey, intern: &mut impl FnMut(&str) -> StrId) {
        let Some(o) = self.open.remove(&thread) else {
            return;
        };
        if let Some(other) = self
            .open
            .values_mut()
            .find(|other| other.key == o.key && other.pid == o.pid)
        {
            other.absorb(o);
            return;
        }
        if self.closing.len() >= MAX_CLOSING {
            self.flush(Duration::MAX, intern);
        }
        match self.closing.get_mut(&(o.pid, o.key)) {
            Some((_, earlier)) => earlier.absorb(o),
            None => {
                self.closing.insert((o.pid, o.key), (thread, o));
            }
        }
    }

    /// Record the closing requests whose grace ended before `now`.
    fn flush(&mut self, now: Duration, intern: &mut impl FnMut(&str) -> StrId) {
        if self.closing.is_empty() {
            return;
        }
        let grace = self.grace();
        let done: Vec<(i32, u64)> = self
            .closing
            .iter()
            .filter(|(_, (_, o))| o.last.saturating_add(grace) < now)
            .map(|(k, _)| *k)
            .collect();
        for k in done {
            if let Some((thread, o)) = self.closing.remove(&k) {
                self.record(thread, o, intern);
            }
        }
    }

    fn record(&mut self, thread: ThreadKey, o: Open, intern: &mut impl FnMut(&str) -> StrId) {
        let mut endpoint = o.endpoint;
        if !self.endpoints.contains_key(&endpoint) && self.endpoints.len() >= MAX_ENDPOINTS {
            endpoint = *self
                .overflow
                .get_or_insert_with(|| intern(OVERFLOW_ENDPOINT));
        }
        let duration = o.last.saturating_sub(o.first) + self.period;
        let stats = self.endpoints.entry(endpoint).or_default();
        stats.record_duration(duration);
        if !stats.would_keep(duration) {
            return;
        }
        let path = if self.paths_kept < MAX_PATHS_KEPT {
            self.paths_kept += 1;
            intern(&o.path)
        } else {
            intern(PATH_NOT_KEPT)
        };
        let mut stacks: Vec<_> = o.stacks.into_iter().collect();
        stacks.sort_by_key(|s| std::cmp::Reverse(s.1));
        stats.keep_slowest(Request {
            endpoint,
            path,
            thread,
            start: o.first,
            duration,
            samples: o.samples,
            stacks,
        });
    }

    /// Close the request open on `thread`, if any (its process exited).
    pub(crate) fn close_thread(
        &mut self,
        thread: ThreadKey,
        mut intern: impl FnMut(&str) -> StrId,
    ) {
        self.close(thread, &mut intern);
    }

    /// Record at once the requests of process `pid` waiting out their
    /// grace: it exited, so no thread of it will see them again.
    pub(crate) fn finish_process(&mut self, pid: i32, mut intern: impl FnMut(&str) -> StrId) {
        let done: Vec<(i32, u64)> = self
            .closing
            .keys()
            .filter(|(p, _)| *p == pid)
            .copied()
            .collect();
        for k in done {
            if let Some((thread, o)) = self.closing.remove(&k) {
                self.record(thread, o, &mut intern);
            }
        }
    }

    /// Close every open request (at the end of a recording).
    pub(crate) fn close_all(&mut self, mut intern: impl FnMut(&str) -> StrId) {
        let threads: Vec<_> = self.open.keys().copied().collect();
        for t in threads {
            self.close(t, &mut intern);
        }
        self.flush(Duration::MAX, &mut intern);
    }

    /// Set an endpoint's statistics (for readers of saved profiles).
    pub(crate) fn restore(&mut self, endpoint: StrId, stats: EndpointRequests) {
        if self.endpoints.len() < MAX_ENDPOINTS || self.endpoints.contains_key(&endpoint) {
            self.endpoints.insert(endpoint, stats);
        }
    }

    /// Statistics per endpoint.
    pub fn endpoints(&self) -> impl Iterator<Item = (StrId, &EndpointRequests)> {
        self.endpoints.iter().map(|(k, v)| (*k, v))
    }

    /// Requests still open (seen by a thread, or within their grace).
    pub fn open_requests(&self) -> usize {
        self.open.len() + self.closing.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const ENDPOINT: StrId = StrId(1);
    const LOOP: ThreadKey = ThreadKey(1);
    const WORKER: ThreadKey = ThreadKey(2);

    fn tracker() -> RequestTracker {
        RequestTracker {
            period: 10 * MS,
            ..Default::default()
        }
    }

    fn see(t: &mut RequestTracker, thread: ThreadKey, ms: u64, key: Option<u64>) {
        let path: Arc<str> = Arc::from("/p");
        t.observe(
            thread,
            100,
            Duration::from_millis(ms),
            true,
            key.map(|k| (k, ENDPOINT, &path)),
            None,
            |_| StrId(99),
        );
    }

    fn stats(t: &mut RequestTracker) -> (u64, Vec<Duration>) {
        t.close_all(|_| StrId(99));
        let e = t.endpoints.get(&ENDPOINT).cloned().unwrap_or_default();
        let mut d = e.durations.clone();
        d.sort();
        (e.count, d)
    }

    #[test]
    fn a_request_seen_on_the_loop_then_in_the_pool_is_one_request() {
        let mut t = tracker();
        // The loop routes it, a worker runs it, the loop sends the answer.
        see(&mut t, LOOP, 0, Some(7));
        see(&mut t, WORKER, 0, None);
        see(&mut t, LOOP, 10, None);
        for ms in (10..=100).step_by(10) {
            see(&mut t, WORKER, ms, Some(7));
        }
        see(&mut t, WORKER, 110, None);
        see(&mut t, LOOP, 110, Some(7));
        see(&mut t, LOOP, 120, None);
        // Long after: nothing.
        see(&mut t, LOOP, 500, None);
        let (count, durations) = stats(&mut t);
        assert_eq!(count, 1);
        assert_eq!(durations, vec![120 * MS]);
    }

    #[test]
    fn requests_apart_by_more_than_the_grace_are_two() {
        let mut t = tracker();
        see(&mut t, WORKER, 0, Some(7));
        see(&mut t, WORKER, 10, Some(7));
        see(&mut t, WORKER, 20, None);
        // 5 periods of grace: seen again 40 ms after its last sample, it is
        // the same request; 100 ms after, another one (an address reused).
        see(&mut t, WORKER, 50, Some(7));
        see(&mut t, WORKER, 60, None);
        see(&mut t, WORKER, 160, Some(7));
        see(&mut t, WORKER, 170, None);
        see(&mut t, WORKER, 400, None);
        let (count, durations) = stats(&mut t);
        assert_eq!(count, 2);
        assert_eq!(durations, vec![10 * MS, 60 * MS]);
    }

    #[test]
    fn other_requests_in_between_keep_theirs_apart() {
        let mut t = tracker();
        // Two async requests interleaving on one loop thread.
        for ms in (0..100).step_by(20) {
            see(&mut t, LOOP, ms, Some(1));
            see(&mut t, LOOP, ms + 10, Some(2));
        }
        see(&mut t, LOOP, 100, None);
        let (count, durations) = stats(&mut t);
        assert_eq!(count, 2);
        assert_eq!(durations, vec![90 * MS, 90 * MS]);
    }

    #[test]
    fn the_same_key_in_another_process_is_another_request() {
        let mut t = tracker();
        let path: Arc<str> = Arc::from("/p");
        see(&mut t, LOOP, 0, Some(7));
        t.observe(
            WORKER,
            200,
            Duration::ZERO,
            true,
            Some((7, ENDPOINT, &path)),
            None,
            |_| StrId(99),
        );
        see(&mut t, LOOP, 10, None);
        t.observe(WORKER, 200, 10 * MS, true, None, None, |_| StrId(99));
        let (count, _) = stats(&mut t);
        assert_eq!(count, 2);
    }
}
