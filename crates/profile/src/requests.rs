//! Requests over time: consecutive samples of one thread that see the same
//! request are one request. Each request's duration is estimated from the
//! first and last sample that saw it (plus one sampling period); per
//! endpoint, counts, a bounded reservoir of durations and the slowest
//! requests with their own stacks are kept. Memory is bounded however long
//! the run.

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
    paths_kept: usize,
    /// The sampling period, added to each request's first-to-last span.
    pub period: Duration,
}

impl RequestTracker {
    /// A thread was sampled at `time` serving request `key` (or none, when
    /// `request` is `None`; `known` false means the stack was not read, so
    /// whatever was open stays open). `intern` interns the strings kept.
    pub(crate) fn observe(
        &mut self,
        thread: ThreadKey,
        time: Duration,
        known: bool,
        request: Option<(u64, StrId, &Arc<str>)>,
        stack: Option<StackId>,
        mut intern: impl FnMut(&str) -> StrId,
    ) {
        if !known {
            return;
        }
        match (self.open.get_mut(&thread), request) {
            (Some(o), Some((key, endpoint, _))) if o.key == key => {
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
                    self.open.insert(
                        thread,
                        Open {
                            key,
                            endpoint,
                            path,
                            first: time,
                            last: time,
                            samples: 1,
                            stacks,
                        },
                    );
                }
            }
        }
    }

    fn close(&mut self, thread: ThreadKey, intern: &mut impl FnMut(&str) -> StrId) {
        let Some(o) = self.open.remove(&thread) else {
            return;
        };
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

    /// Close every open request (at the end of a recording).
    pub(crate) fn close_all(&mut self, mut intern: impl FnMut(&str) -> StrId) {
        let threads: Vec<_> = self.open.keys().copied().collect();
        for t in threads {
            self.close(t, &mut intern);
        }
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

    /// Requests still open.
    pub fn open_requests(&self) -> usize {
        self.open.len()
    }
}
