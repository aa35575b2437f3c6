//! The aggregated profile every output reads: interned strings, frames and
//! stacks; sample counts keyed by (stack, thread, state). Memory stays
//! bounded however long the run: samples are aggregated, never stored one
//! by one.
#![deny(missing_docs)]

use std::collections::HashMap;

use rustc_hash::FxHashMap;

mod activity;
mod allocations;
pub mod heap;
mod requests;
pub use allocations::{
    leak_score, AllocationSite, Allocations, LeakCandidate, SiteStats, LEAK_THRESHOLD,
};
mod timeline;
pub use activity::{Activity, StateCounts, ACTIVITY_STATES, MAX_BUCKETS};
pub use requests::{
    EndpointRequests, Request, RequestTracker, MAX_PATHS_KEPT, PATH_NOT_KEPT, SLOWEST_KEPT,
};
use std::time::Duration;
pub use timeline::{Timeline, TimelineEntry, DEFAULT_TIMELINE_LIMIT};

use pyrometer_sampler::{Sample, ThreadState};

/// Index of an interned string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StrId(pub u32);
/// Index of an interned frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameId(pub u32);
/// Index of an interned stack (a node of the call tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackId(pub u32);
/// Index of an interned thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ThreadKey(pub u32);

/// A frame: a function at a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameInfo {
    /// Function name.
    pub name: StrId,
    /// File name as the code object has it.
    pub filename: StrId,
    /// Current line (0: unknown).
    pub line: i32,
    /// First line of the function.
    pub first_line: i32,
}

/// A stack node: a frame under a parent stack (root first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StackNode {
    /// The caller's stack, `None` at the root.
    pub parent: Option<StackId>,
    /// The frame.
    pub frame: FrameId,
}

/// A thread of a process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThreadInfo {
    /// Process id.
    pub pid: i32,
    /// `threading.get_ident()`.
    pub thread_id: u64,
    /// OS thread id.
    pub native_id: Option<i32>,
    /// Name from `threading`.
    pub name: Option<String>,
}

impl ThreadInfo {
    /// `NAME TID` (or just `TID` for a thread without a name), as the
    /// `thread (NAME TID)` root frames and per-thread profiles show it.
    pub fn label(&self) -> String {
        if self.thread_id == OTHER_THREADS_IDENT && self.native_id.is_none() {
            // The bucket of threads beyond the cap (see `MAX_THREADS_PER_PROCESS`).
            if let Some(n) = &self.name {
                return n.clone();
            }
        }
        let id = match self.native_id {
            Some(t) => t.to_string(),
            None => format!("{:#x}", self.thread_id),
        };
        match &self.name {
            Some(n) => format!("{n} {id}"),
            None => id,
        }
    }
}

/// Threads kept apart per process. A thread is one lifetime: a new thread
/// that reuses an ended one's `pthread_t` (and so its `threading` ident)
/// has another OS thread id and is another thread, unless it also has the
/// ended one's name (a pool restarting its worker: one thread). Beyond this many, a
/// process's new threads are counted together under [`OTHER_THREADS`], so
/// a program that starts a thread every millisecond does not grow the
/// profile without bound.
pub const MAX_THREADS_PER_PROCESS: usize = 4096;
/// Threads kept apart in the whole profile (many processes).
pub const MAX_THREADS: usize = 65_536;
/// The name of the per-process bucket of threads beyond the caps.
pub const OTHER_THREADS: &str = "(other threads)";
/// The bucket's ident: no `pthread_t` (a user-space address) is this.
pub const OTHER_THREADS_IDENT: u64 = u64::MAX;
/// Threads' last stacks kept for prefix matching (an optimisation only:
/// when full it is emptied, and the next samples are matched afresh).
const MAX_LAST_PATHS: usize = 4096;

/// What is counted per (stack, thread, state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleKey {
    /// The innermost stack node (`None`: a thread with no Python frames).
    pub stack: Option<StackId>,
    /// The thread.
    pub thread: ThreadKey,
    /// What the thread was doing.
    pub state: ThreadState,
    /// The web endpoint being served (`METHOD module.view`), if any.
    pub endpoint: Option<StrId>,
    /// The category of code the sample was in (app, framework, database, ...).
    pub category: Option<StrId>,
}

/// Facts about the recording, for headers and summaries.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// What was profiled (command line or `pid N`).
    pub target: String,
    /// Python version of the target.
    pub python_version: String,
    /// Requested rate in Hz.
    pub rate: f64,
    /// Wall-clock duration of the recording.
    pub duration: Duration,
    /// Ticks on which the target was read.
    pub ticks: u64,
    /// Ticks skipped because the sampler was late.
    pub late_ticks: u64,
    /// Ticks dropped because a read was torn or failed.
    pub errors: u64,
    /// When the recording started, if known (saved profiles carry it).
    pub start_time: Option<std::time::SystemTime>,
}

/// The aggregated profile.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    strings: Vec<String>,
    string_ids: FxHashMap<String, StrId>,
    frames: Vec<FrameInfo>,
    frame_ids: FxHashMap<FrameInfo, FrameId>,
    /// (pid, code object, line) → frame: the per-sample fast path.
    frame_by_code: FxHashMap<(i32, u64, i32), FrameId>,
    stacks: Vec<StackNode>,
    stack_ids: FxHashMap<StackNode, StackId>,
    threads: Vec<ThreadInfo>,
    /// (pid, ident, OS thread id) → thread: one entry per thread lifetime.
    thread_ids: FxHashMap<(i32, u64, Option<i32>), ThreadKey>,
    /// Threads kept apart per process (see [`MAX_THREADS_PER_PROCESS`]).
    threads_per_process: FxHashMap<i32, usize>,
    /// (pid, ident) → its latest lifetime, for callers that do not know
    /// the OS thread id (saved profiles' timeline samples).
    latest_lifetime: FxHashMap<(i32, u64), ThreadKey>,
    counts: FxHashMap<SampleKey, u64>,
    /// Each thread's last stack, root first, as (code, line, stack node):
    /// consecutive samples share most of their stack, so the shared prefix
    /// is matched without hashing.
    last_path: FxHashMap<ThreadKey, Vec<(u64, i32, StackId)>>,
    requests: RequestTracker,
    activity: Activity,
    /// Command line of each sampled process.
    processes: std::collections::BTreeMap<i32, String>,
    process_roles: std::collections::BTreeMap<i32, String>,
    timeline: Timeline,
    memory: heap::MemoryProfile,
    /// Sampled allocations (`--memory`).
    allocations: Allocations,
    /// Samples whose stack was cut at the depth cap.
    pub truncated_samples: u64,
    /// Facts about the recording.
    pub meta: Meta,
}

/// How many entries each of the profile's tables holds: what its memory
/// grows with (for soak checks; none of them grows with samples alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableSizes {
    /// Interned strings.
    pub strings: usize,
    /// Distinct frames.
    pub frames: usize,
    /// (pid, code, line) → frame cache entries.
    pub frames_by_code: usize,
    /// Stack nodes.
    pub stacks: usize,
    /// Threads seen.
    pub threads: usize,
    /// Distinct (stack, thread, state, endpoint, category) keys.
    pub counts: usize,
    /// Threads' last stacks kept for prefix matching.
    pub last_paths: usize,
    /// Requests open now.
    pub open_requests: usize,
    /// Endpoints with request statistics.
    pub endpoints: usize,
    /// Durations in the endpoints' reservoirs plus requests kept as slowest.
    pub requests_kept: usize,
    /// Timeline entries kept.
    pub timeline: usize,
    /// Entries of the per-second activity series.
    pub activity_buckets: usize,
}

fn intern_into(strings: &mut Vec<String>, ids: &mut FxHashMap<String, StrId>, s: &str) -> StrId {
    if let Some(id) = ids.get(s) {
        return *id;
    }
    let id = StrId(strings.len() as u32);
    strings.push(s.to_string());
    ids.insert(s.to_string(), id);
    id
}

impl Profile {
    /// Entries per table (see [`TableSizes`]).
    pub fn table_sizes(&self) -> TableSizes {
        let (mut endpoints, mut requests_kept) = (0, 0);
        for (_, e) in self.requests.endpoints() {
            endpoints += 1;
            requests_kept += e.durations().len() + e.slowest.len();
        }
        TableSizes {
            strings: self.strings.len(),
            frames: self.frames.len(),
            frames_by_code: self.frame_by_code.len(),
            stacks: self.stacks.len(),
            threads: self.threads.len(),
            counts: self.counts.len(),
            last_paths: self.last_path.len(),
            open_requests: self.requests.open_requests(),
            endpoints,
            requests_kept,
            timeline: self.timeline.entries().len(),
            activity_buckets: self.activity.buckets().iter().map(Vec::len).sum(),
        }
    }

    /// An empty profile.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record the command line of a sampled process.
    pub fn set_process(&mut self, pid: i32, cmdline: &str) {
        self.processes.insert(pid, cmdline.to_string());
    }

    /// Record the role of a sampled process in its service: `master` (the
    /// process pyrometer attached to, whose workers it follows) or `worker`.
    pub fn set_process_role(&mut self, pid: i32, role: &str) {
        self.process_roles.insert(pid, role.to_string());
    }

    /// The role of a process, if known.
    pub fn process_role(&self, pid: i32) -> Option<&str> {
        self.process_roles.get(&pid).map(String::as_str)
    }

    /// The command line of a process, if known.
    pub fn process_cmdline(&self, pid: i32) -> Option<&str> {
        self.processes.get(&pid).map(String::as_str)
    }

    /// Every sampled process: (pid, command line).
    pub fn processes(&self) -> impl Iterator<Item = (i32, &str)> {
        self.processes.iter().map(|(p, c)| (*p, c.as_str()))
    }

    /// Intern a string.
    pub fn intern(&mut self, s: &str) -> StrId {
        intern_into(&mut self.strings, &mut self.string_ids, s)
    }

    /// A string by id.
    pub fn str(&self, id: StrId) -> &str {
        &self.strings[id.0 as usize]
    }

    /// Intern a frame.
    pub fn frame_id(&mut self, frame: FrameInfo) -> FrameId {
        if let Some(id) = self.frame_ids.get(&frame) {
            return *id;
        }
        let id = FrameId(self.frames.len() as u32);
        self.frames.push(frame);
        self.frame_ids.insert(frame, id);
        id
    }

    /// A frame by id.
    pub fn frame(&self, id: FrameId) -> &FrameInfo {
        &self.frames[id.0 as usize]
    }

    /// Intern a stack node.
    pub fn stack_id(&mut self, node: StackNode) -> StackId {
        if let Some(id) = self.stack_ids.get(&node) {
            return *id;
        }
        let id = StackId(self.stacks.len() as u32);
        self.stacks.push(node);
        self.stack_ids.insert(node, id);
        id
    }

    /// A stack node by id.
    pub fn stack(&self, id: StackId) -> &StackNode {
        &self.stacks[id.0 as usize]
    }

    /// Frames of a stack, root first.
    pub fn stack_frames(&self, id: Option<StackId>) -> Vec<FrameId> {
        let mut out = Vec::new();
        let mut cur = id;
        while let Some(s) = cur {
            let node = self.stack(s);
            out.push(node.frame);
            cur = node.parent;
        }
        out.reverse();
        out
    }

    /// Intern a thread.
    /// One key per thread lifetime, (pid, ident, OS thread id); past the
    /// caps, the process's [`OTHER_THREADS`] bucket.
    pub fn thread_key(&mut self, info: ThreadInfo) -> ThreadKey {
        let id = (info.pid, info.thread_id, info.native_id);
        let ident = (info.pid, info.thread_id);
        let known = match self.thread_ids.get(&id) {
            Some(k) => Some(*k),
            // Without an OS thread id: the ident's latest lifetime.
            None if info.native_id.is_none() => self.latest_lifetime.get(&ident).copied(),
            // The first OS thread id of an ident seen so far only without
            // one: the same thread, now with its id.
            None if info.thread_id != 0 && info.thread_id != OTHER_THREADS_IDENT => {
                match self.thread_ids.remove(&(ident.0, ident.1, None)) {
                    Some(k) => {
                        self.threads[k.0 as usize].native_id = info.native_id;
                        self.thread_ids.insert(id, k);
                        Some(k)
                    }
                    None => None,
                }
            }
            None => None,
        };
        // A new OS thread on an ident whose latest thread had the same name
        // is that thread's successor in a pool (a worker that exited and was
        // started again): one thread for the profile, labelled with the
        // newest OS thread id. Counting every such lifetime apart would grow
        // the profile with each restart of a pool thread for as long as a
        // service runs. A thread whose name is not known yet, or differs, is
        // a thread of its own.
        let known = known.or_else(|| {
            let name = info.name.as_ref()?;
            let k = *self.latest_lifetime.get(&ident)?;
            let latest = &mut self.threads[k.0 as usize];
            if latest.name.as_ref() != Some(name) || latest.native_id.is_none() {
                return None;
            }
            latest.native_id = info.native_id;
            self.thread_ids.insert(id, k);
            Some(k)
        });
        if let Some(k) = known {
            // Names arrive late (threading may be read after the first sample).
            if info.name.is_some() && self.threads[k.0 as usize].name != info.name {
                self.threads[k.0 as usize].name = info.name;
            }
            return k;
        }
        let kept = self
            .threads_per_process
            .get(&info.pid)
            .copied()
            .unwrap_or(0);
        if kept >= MAX_THREADS_PER_PROCESS || self.threads.len() >= MAX_THREADS {
            return self.other_threads(info.pid);
        }
        self.threads_per_process.insert(info.pid, kept + 1);
        let k = ThreadKey(self.threads.len() as u32);
        self.thread_ids.insert(id, k);
        self.latest_lifetime.insert(ident, k);
        self.threads.push(info);
        k
    }

    /// The bucket of a process's threads beyond the caps (made once, even
    /// past [`MAX_THREADS`]: at most one per process).
    fn other_threads(&mut self, pid: i32) -> ThreadKey {
        let id = (pid, OTHER_THREADS_IDENT, None);
        if let Some(k) = self.thread_ids.get(&id) {
            return *k;
        }
        let k = ThreadKey(self.threads.len() as u32);
        self.thread_ids.insert(id, k);
        self.threads.push(ThreadInfo {
            pid,
            thread_id: OTHER_THREADS_IDENT,
            native_id: None,
            name: Some(OTHER_THREADS.to_string()),
        });
        k
    }

    /// A thread by key.
    pub fn thread(&self, key: ThreadKey) -> &ThreadInfo {
        &self.threads[key.0 as usize]
    }

    /// Add `count` samples of one stack.
    pub fn add(&mut self, key: SampleKey, count: u64) {
        *self.counts.entry(key).or_insert(0) += count;
    }

    /// Add one sample from the sampler.
    pub fn add_sample(&mut self, sample: &Sample) {
        let thread = self.thread_key(ThreadInfo {
            pid: sample.pid,
            thread_id: sample.thread_id,
            native_id: sample.native_id,
            name: sample.thread_name.as_deref().map(str::to_string),
        });
        let mut path = match self.last_path.remove(&thread) {
            Some(p) => p,
            None => {
                if self.last_path.len() >= MAX_LAST_PATHS {
                    // Mostly threads that ended: start afresh.
                    self.last_path.clear();
                }
                Vec::new()
            }
        };
        let mut parent = None;
        let mut depth = 0;
        for f in sample.frames.iter().rev() {
            if let Some(&(code, line, id)) = path.get(depth) {
                if code == f.code_key && line == f.line && code != 0 {
                    parent = Some(id);
                    depth += 1;
                    continue;
                }
            }
            path.truncate(depth);
            depth = usize::MAX;
            let code_key = (sample.pid, f.code_key, f.line);
            let frame = match self.frame_by_code.get(&code_key) {
                Some(id) if f.code_key != 0 => *id,
                _ => {
                    let info = FrameInfo {
                        name: self.intern(&f.name),
                        filename: self.intern(&f.filename),
                        line: f.line,
                        first_line: f.first_line,
                    };
                    let id = self.frame_id(info);
                    if f.code_key != 0 {
                        self.frame_by_code.insert(code_key, id);
                    }
                    id
                }
            };
            let id = self.stack_id(StackNode { parent, frame });
            parent = Some(id);
            path.push((f.code_key, f.line, id));
        }
        if depth != usize::MAX {
            path.truncate(depth);
        }
        self.last_path.insert(thread, path);
        if sample.truncated {
            self.truncated_samples += 1;
        }
        let endpoint = sample.request.as_ref().map(|r| self.intern(&r.endpoint));
        let category = sample.category.map(|c| self.intern(c.as_str()));
        let request = sample
            .request
            .as_ref()
            .zip(endpoint)
            .map(|(r, endpoint)| (r.key, endpoint, &r.path));
        self.memory
            .observe(sample.pid, parent, endpoint, sample.state.is_active());
        self.timeline.push(TimelineEntry {
            time: sample.time,
            thread,
            stack: parent,
            state: sample.state,
            endpoint,
            request: sample.request.as_ref().map(|r| r.key),
        });
        let (strings, string_ids) = (&mut self.strings, &mut self.string_ids);
        self.requests.observe(
            thread,
            sample.pid,
            sample.time,
            sample.walked,
            request,
            parent,
            |s| intern_into(strings, string_ids, s),
        );
        self.activity.add(sample.time, sample.pid, sample.state, 1);
        self.add(
            SampleKey {
                stack: parent,
                thread,
                state: sample.state,
                endpoint,
                category,
            },
            1,
        );
    }

    /// Record a memory reading (attach mode: RSS and pymalloc heap).
    pub fn add_memory_reading(&mut self, r: &pyrometer_sampler::MemoryReading) {
        self.memory
            .add_reading(r.pid, r.time, r.rss, r.heap, r.heap_unavailable.as_deref());
    }

    /// Memory per process and estimated growth per stack and endpoint.
    pub fn memory(&self) -> &heap::MemoryProfile {
        &self.memory
    }

    /// The memory profile, for readers of saved profiles.
    pub fn memory_mut(&mut self) -> &mut heap::MemoryProfile {
        &mut self.memory
    }

    /// A process exited: drop what was kept only to aggregate its next
    /// samples (its code-object → frame cache, its threads' last stacks) and
    /// close its threads' open requests. A long run of a service whose
    /// workers are recycled (gunicorn `max_requests`) sees a new pid every
    /// few seconds; without this, those caches would grow with every worker
    /// ever started. Its frames, stacks and counts stay: they are the profile.
    pub fn process_exited(&mut self, pid: i32) {
        self.frame_by_code.retain(|(p, _, _), _| *p != pid);
        let threads: Vec<ThreadKey> = self
            .thread_ids
            .iter()
            .filter(|((p, _, _), _)| *p == pid)
            .map(|(_, k)| *k)
            .collect();
        let (strings, string_ids) = (&mut self.strings, &mut self.string_ids);
        for t in threads {
            self.last_path.remove(&t);
            self.requests
                .close_thread(t, |s| intern_into(strings, string_ids, s));
        }
        self.requests
            .finish_process(pid, |s| intern_into(strings, string_ids, s));
    }

    /// Close open requests: call when the recording ends.
    pub fn finish(&mut self) {
        let (strings, string_ids) = (&mut self.strings, &mut self.string_ids);
        self.requests
            .close_all(|s| intern_into(strings, string_ids, s));
    }

    /// The first samples in time order (bounded; see [`Timeline`]).
    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    /// The timeline, to change its limit or add entries (readers of saved
    /// profiles).
    pub fn timeline_mut(&mut self) -> &mut Timeline {
        &mut self.timeline
    }

    /// Intern a stack given as frames, root first, without counting a
    /// sample of it. Returns the innermost stack node.
    pub fn intern_stack(&mut self, frames: &[FrameInfo]) -> Option<StackId> {
        let mut parent = None;
        for f in frames {
            let frame = self.frame_id(*f);
            parent = Some(self.stack_id(StackNode { parent, frame }));
        }
        parent
    }

    /// Requests per endpoint.
    pub fn requests(&self) -> &RequestTracker {
        &self.requests
    }

    /// Samples over time, per process and state.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Replace the activity series (for readers of saved profiles).
    pub fn set_activity(&mut self, activity: Activity) {
        self.activity = activity;
    }

    /// Set the request statistics of an endpoint (for readers of saved
    /// profiles).
    pub fn restore_requests(&mut self, endpoint: &str, stats: EndpointRequests) {
        let e = self.intern(endpoint);
        self.requests.restore(e, stats);
    }

    /// Set the sampling period used to estimate request durations.
    pub fn set_period(&mut self, period: Duration) {
        self.requests.period = period;
    }

    /// Add `count` samples of a stack given as frames, root first (for
    /// readers of saved profiles). Returns the innermost stack node.
    pub fn add_stack(
        &mut self,
        frames: &[FrameInfo],
        thread: ThreadKey,
        state: ThreadState,
        count: u64,
    ) -> Option<StackId> {
        self.add_stack_labelled(frames, thread, state, None, None, count)
    }

    /// [`Profile::add_stack`] with endpoint and category labels.
    pub fn add_stack_labelled(
        &mut self,
        frames: &[FrameInfo],
        thread: ThreadKey,
        state: ThreadState,
        endpoint: Option<&str>,
        category: Option<&str>,
        count: u64,
    ) -> Option<StackId> {
        let endpoint = endpoint.map(|e| self.intern(e));
        let category = category.map(|c| self.intern(c));
        let mut parent = None;
        for f in frames {
            let frame = self.frame_id(*f);
            parent = Some(self.stack_id(StackNode { parent, frame }));
        }
        self.add(
            SampleKey {
                stack: parent,
                thread,
                state,
                endpoint,
                category,
            },
            count,
        );
        parent
    }

    /// Every (key, count), in no particular order (for readers whose
    /// result does not depend on it: no sort of every key).
    pub fn counts_unordered(&self) -> impl Iterator<Item = (&SampleKey, u64)> + '_ {
        self.counts.iter().map(|(k, c)| (k, *c))
    }

    /// Every (key, count), in a stable order.
    pub fn counts(&self) -> Vec<(SampleKey, u64)> {
        let mut v: Vec<_> = self.counts.iter().map(|(k, c)| (*k, *c)).collect();
        v.sort_by_key(|(k, _)| (k.thread, k.stack, k.state, k.endpoint, k.category));
        v
    }

    /// Total samples.
    pub fn total_samples(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Samples per thread state.
    pub fn by_state(&self) -> Vec<(ThreadState, u64)> {
        let mut m: HashMap<ThreadState, u64> = HashMap::new();
        for (k, c) in &self.counts {
            *m.entry(k.state).or_insert(0) += c;
        }
        let mut v: Vec<_> = m.into_iter().collect();
        v.sort();
        v
    }

    /// Own ("self") samples per function name and file, descending.
    pub fn top_functions(&self, n: usize) -> Vec<(String, String, u64, u64)> {
        let mut own: HashMap<(StrId, StrId), u64> = HashMap::new();
        let mut total: HashMap<(StrId, StrId), u64> = HashMap::new();
        for (k, c) in &self.counts {
            let frames = self.stack_frames(k.stack);
            if let Some(leaf) = frames.last() {
                let f = self.frame(*leaf);
                *own.entry((f.name, f.filename)).or_insert(0) += c;
            }
            let mut seen = std::collections::HashSet::new();
            for id in frames {
                let f = self.frame(id);
                if seen.insert((f.name, f.filename)) {
                    *total.entry((f.name, f.filename)).or_insert(0) += c;
                }
            }
        }
        let mut v: Vec<_> = total
            .iter()
            .map(|(k, t)| {
                (
                    self.str(k.0).to_string(),
                    self.str(k.1).to_string(),
                    own.get(k).copied().unwrap_or(0),
                    *t,
                )
            })
            .collect();
        v.sort_by(|a, b| b.2.cmp(&a.2).then(b.3.cmp(&a.3)).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyrometer_sampler::SampledFrame;
    use std::sync::Arc;

    fn sample(frames: &[(&str, i32)], state: ThreadState) -> Sample {
        Sample {
            time: Duration::ZERO,
            pid: 1,
            thread_id: 7,
            native_id: Some(7),
            thread_name: Some(Arc::from("MainThread")),
            state,
            holds_gil: true,
            frames: frames
                .iter()
                .map(|(n, l)| SampledFrame {
                    name: Arc::from(*n),
                    filename: Arc::from("/x.py"),
                    line: *l,
                    first_line: 1,
                    code_key: 0,
                })
                .collect(),
            truncated: false,
            walked: true,
            request: None,
            category: None,
        }
    }

    fn keyed(frames: &[(&str, i32, u64)]) -> Sample {
        let mut s = sample(&[], ThreadState::Python);
        s.frames = frames
            .iter()
            .map(|(n, l, k)| SampledFrame {
                name: Arc::from(*n),
                filename: Arc::from("/x.py"),
                line: *l,
                first_line: 1,
                code_key: *k,
            })
            .collect();
        s
    }

    /// A thread started and ended every millisecond, each reusing the last
    /// one's `pthread_t` (the same ident) with a new OS thread id: each
    /// lifetime is its own thread with its own label, up to the cap; later
    /// ones share one bucket, so memory stays bounded.
    /// A pool thread that exits and is started again on the same ident with
    /// the same name is one thread (labelled with its newest OS thread id);
    /// a thread of another name, or whose name is not known yet, on that
    /// ident is a thread of its own.
    #[test]
    fn a_restarted_pool_thread_is_one_thread() {
        let mut p = Profile::new();
        let info = |native: i32, name: Option<&str>| ThreadInfo {
            pid: 7,
            thread_id: 0x7f00_0000_1000,
            native_id: Some(native),
            name: name.map(str::to_string),
        };
        let first = p.thread_key(info(100, Some("AnyIO worker thread")));
        let again = p.thread_key(info(101, Some("AnyIO worker thread")));
        assert_eq!(first, again);
        assert_eq!(p.thread(again).label(), "AnyIO worker thread 101");
        let other = p.thread_key(info(102, Some("Thread-3 (job)")));
        assert_ne!(other, first);
        let unnamed = p.thread_key(info(103, None));
        assert_ne!(unnamed, other);
        assert_ne!(unnamed, first);
        assert_eq!(p.table_sizes().threads, 3);
    }

    #[test]
    fn short_lived_threads_are_distinct_and_bounded() {
        let mut p = Profile::new();
        let lifetimes = MAX_THREADS_PER_PROCESS + 20_000;
        for i in 0..lifetimes {
            let mut s = keyed(&[("short_life", 3, 0x1000), ("run", 9, 0x2000)]);
            s.thread_id = 0x7f00_dead_b000;
            s.native_id = Some(1000 + i as i32);
            s.thread_name = Some(Arc::from(format!("Thread-{i} (short_life)")));
            p.add_sample(&s);
        }
        let sizes = p.table_sizes();
        assert_eq!(sizes.threads, MAX_THREADS_PER_PROCESS + 1, "{sizes:?}");
        assert!(sizes.last_paths <= MAX_LAST_PATHS, "{sizes:?}");
        assert!(sizes.counts <= MAX_THREADS_PER_PROCESS + 1, "{sizes:?}");
        assert_eq!(p.total_samples(), lifetimes as u64);
        let labels: Vec<String> = (0..sizes.threads as u32)
            .map(|k| p.thread(ThreadKey(k)).label())
            .collect();
        assert_eq!(labels[0], "Thread-0 (short_life) 1000");
        assert_eq!(labels[1], "Thread-1 (short_life) 1001");
        let distinct: std::collections::HashSet<&String> = labels.iter().collect();
        assert_eq!(distinct.len(), labels.len(), "labels repeat");
        assert_eq!(labels.last().map(String::as_str), Some(OTHER_THREADS));
        // The bucket holds every lifetime past the cap.
        let other = ThreadKey(MAX_THREADS_PER_PROCESS as u32);
        let in_other: u64 = p
            .counts()
            .iter()
            .filter(|(k, _)| k.thread == other)
            .map(|(_, c)| c)
            .sum();
        assert_eq!(in_other, 20_000);
        // A thread state not yet initialized (ident 0) is not a bucket.
        let zero = p.thread_key(ThreadInfo {
            pid: 4,
            thread_id: 0,
            native_id: None,
            name: None,
        });
        assert_eq!(p.thread(zero).label(), "0x0");
        // Another process has its own cap.
        let mut s = keyed(&[("main", 1, 0x3000)]);
        s.pid = 2;
        s.native_id = Some(2);
        let k = p.thread_key(ThreadInfo {
            pid: 2,
            thread_id: s.thread_id,
            native_id: s.native_id,
            name: None,
        });
        assert_eq!(p.thread(k).label(), "2");
        // Without an OS thread id (a saved profile's timeline): the ident's
        // latest lifetime; an id learned later joins the same thread.
        let latest = p.thread_key(ThreadInfo {
            pid: 2,
            thread_id: s.thread_id,
            native_id: None,
            name: None,
        });
        assert_eq!(latest, k);
        let early = p.thread_key(ThreadInfo {
            pid: 3,
            thread_id: 9,
            native_id: None,
            name: None,
        });
        let later = p.thread_key(ThreadInfo {
            pid: 3,
            thread_id: 9,
            native_id: Some(33),
            name: Some("late".into()),
        });
        assert_eq!(early, later);
        assert_eq!(p.thread(later).label(), "late 33");
    }

    #[test]
    fn prefix_reuse_gives_the_same_stacks_as_a_fresh_walk() {
        let seq = [
            vec![("leaf", 3, 30), ("mid", 5, 20), ("main", 10, 10)],
            vec![("leaf", 4, 30), ("mid", 5, 20), ("main", 10, 10)],
            vec![("main", 10, 10)],
            vec![("other", 7, 40), ("mid", 6, 20), ("main", 10, 10)],
            vec![("leaf", 3, 30), ("mid", 5, 20), ("main", 10, 10)],
            vec![],
            vec![
                ("deeper", 1, 50),
                ("leaf", 3, 30),
                ("mid", 5, 20),
                ("main", 10, 10),
            ],
        ];
        let mut cached = Profile::new();
        for frames in &seq {
            cached.add_sample(&keyed(frames));
        }
        let render = |p: &Profile| {
            let mut v: Vec<(Vec<String>, u64)> = p
                .counts()
                .into_iter()
                .map(|(k, c)| {
                    let names = p
                        .stack_frames(k.stack)
                        .into_iter()
                        .map(|f| format!("{}:{}", p.str(p.frame(f).name), p.frame(f).line))
                        .collect();
                    (names, c)
                })
                .collect();
            v.sort();
            v
        };
        let mut fresh_counts = Vec::new();
        for frames in &seq {
            let mut p = Profile::new();
            p.add_sample(&keyed(frames));
            fresh_counts.extend(render(&p));
        }
        fresh_counts.sort();
        let mut merged: Vec<(Vec<String>, u64)> = Vec::new();
        for (k, c) in fresh_counts {
            match merged.last_mut() {
                Some((lk, lc)) if *lk == k => *lc += c,
                _ => merged.push((k, c)),
            }
        }
        assert_eq!(render(&cached), merged);
    }

    #[test]
    fn aggregates_and_shares_prefixes() {
        let mut p = Profile::new();
        p.add_sample(&sample(&[("leaf", 3), ("main", 10)], ThreadState::Python));
        p.add_sample(&sample(&[("leaf", 3), ("main", 10)], ThreadState::Python));
        p.add_sample(&sample(&[("other", 5), ("main", 10)], ThreadState::Idle));
        assert_eq!(p.total_samples(), 3);
        assert_eq!(p.counts().len(), 2);
        // "main" is interned once and shared as the root of both stacks.
        assert_eq!(p.stacks.iter().filter(|s| s.parent.is_none()).count(), 1);
        let top = p.top_functions(10);
        assert_eq!(top[0].0, "leaf");
        assert_eq!(top[0].2, 2);
        assert_eq!(top.iter().find(|t| t.0 == "main").unwrap().3, 3);
        assert_eq!(
            p.by_state(),
            vec![(ThreadState::Python, 2), (ThreadState::Idle, 1)]
        );
    }
}
