//! A target: one process with a located interpreter, sampled thread by thread.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use crate::web::{Category, EndpointNamer, SampledRequest};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyrometer_cpython::{
    locate, top_frame_of, CpythonError, Interpreter, StackReader, ThreadStack,
};
use pyrometer_process::{
    CacheStats, MemoryError, NsTidMap, PageCache, Process, ProcessError, SchedStat, SchedState,
    SchedstatReader, StatmReader, StoppedThreads, ThreadCounter, ThreadStatReader,
};

/// Reads of a tick before a thread whose stack kept changing under the
/// walk is dropped (counted as torn). On churn.py (a stack 10–60 frames
/// deep, changing every few µs) torn reads come in runs: 8 attempts left
/// 1–2.6 % of samples torn, 16 left 0.02–0.04 %. A retry costs one
/// snapshot (under 10 µs), and only torn ticks pay it.
const READ_ATTEMPTS: u32 = 16;
/// A snapshot copy that took longer than this was likely preempted midway
/// (a few dozen pages copy in under 10 µs): its running stacks are checked
/// like ones that needed pages beyond it.
const SLOW_SNAPSHOT: Duration = Duration::from_micros(40);
/// Samples of threads that have not run are reused for at most this long:
/// then every thread is read again (a native thread pyrometer does not
/// watch may have created a Python thread state meanwhile).
const FULL_READ_EVERY: Duration = Duration::from_millis(100);

/// Ended threads whose scheduler-state files may stay open (see
/// `Target::close_files_of_ended_threads`).
const ENDED_THREADS_KEPT: usize = 16;

/// What a thread was doing when sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThreadState {
    /// On a CPU, holding the GIL: running Python code.
    Python,
    /// On a CPU without the GIL: native code (C extensions, I/O syscalls).
    Native,
    /// Waiting to take the GIL.
    GilWait,
    /// Not on a CPU: sleeping, blocked on I/O or a lock.
    Idle,
}

impl ThreadState {
    /// The label used in outputs.
    pub fn as_str(&self) -> &'static str {
        match self {
            ThreadState::Python => "python",
            ThreadState::Native => "native",
            ThreadState::GilWait => "gil-wait",
            ThreadState::Idle => "idle",
        }
    }
    /// Whether the thread was on a CPU.
    pub fn is_active(&self) -> bool {
        matches!(self, ThreadState::Python | ThreadState::Native)
    }
}

/// One frame of a sample.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SampledFrame {
    /// Function name (qualified where the interpreter knows it).
    pub name: Arc<str>,
    /// File name as the code object has it.
    pub filename: Arc<str>,
    /// Current line (0: unknown).
    pub line: i32,
    /// First line of the function.
    pub first_line: i32,
    /// Identity of the code object within its process (its address): lets
    /// aggregation skip re-hashing names and files on every sample.
    pub code_key: u64,
}

/// One thread at one tick.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Time since the recording started.
    pub time: Duration,
    /// Process id.
    pub pid: i32,
    /// `threading.get_ident()`.
    pub thread_id: u64,
    /// OS thread id.
    pub native_id: Option<i32>,
    /// Thread name from `threading`, if it has one.
    pub thread_name: Option<Arc<str>>,
    /// What the thread was doing.
    pub state: ThreadState,
    /// Holds the GIL.
    pub holds_gil: bool,
    /// Frames, innermost first.
    pub frames: Vec<SampledFrame>,
    /// The stack was deeper than the cap.
    pub truncated: bool,
    /// Whether the stack was read (idle threads' stacks may be skipped).
    pub walked: bool,
    /// The web request the thread was serving, if any.
    pub request: Option<SampledRequest>,
    /// What kind of code the thread was in (app, framework, database, ...).
    pub category: Option<Category>,
}

/// A thread as shown by `dump`.
#[derive(Debug, Clone)]
pub struct ThreadSummary {
    /// The sample of the thread.
    pub sample: Sample,
    /// Locals per frame (innermost first), rendered safely; empty unless asked.
    pub locals: Vec<Vec<(String, String)>>,
}

/// Why attaching failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// From the interpreter model (not Python, unsupported version, ...).
    #[error(transparent)]
    Cpython(#[from] CpythonError),
    /// From the OS layer.
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// Why one sample could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// The target exited.
    #[error("the target process exited")]
    ProcessGone,
    /// The data changed under the reader (a torn read): the sample is dropped.
    #[error("torn read: {0}")]
    Torn(String),
    /// The process replaced itself with another program (exec): the
    /// interpreter that was read is gone.
    #[error("the target process replaced itself with another program (exec)")]
    Replaced,
    /// `--blocking` could not stop the target's threads (ptrace refused).
    #[error("cannot stop the target's threads for --blocking: {0}; run without --blocking")]
    CannotStop(String),
    /// The kernel refused access.
    #[error("permission denied")]
    PermissionDenied,
    /// The interpreter is not running yet, or is shutting down.
    #[error("interpreter not initialized")]
    NotInitialized,
}

impl From<CpythonError> for SampleError {
    fn from(e: CpythonError) -> Self {
        match e {
            CpythonError::Memory(MemoryError::ProcessGone) => SampleError::ProcessGone,
            CpythonError::Memory(MemoryError::PermissionDenied) => SampleError::PermissionDenied,
            CpythonError::NotInitialized => SampleError::NotInitialized,
            other => SampleError::Torn(other.to_string()),
        }
    }
}

/// Counters of one target.
#[derive(Debug, Default, Clone)]
pub struct TargetStats {
    /// Ticks at which the target was sampled (read, or found not to have run).
    pub ticks: u64,
    /// Thread samples taken.
    pub samples: u64,
    /// Ticks dropped because a read was torn.
    pub torn: u64,
    /// Thread samples dropped because the thread's stack changed during the walk.
    pub torn_threads: u64,
    /// Thread reads found torn and read again within their tick.
    pub torn_retries: u64,
    /// Thread samples reported again from the last tick, unread, because
    /// the thread has not been on a CPU since (included in `samples`).
    pub reused_samples: u64,
    /// Ticks at which no thread had run since the last one, so no memory
    /// of the target was read (included in `ticks`).
    pub unread_ticks: u64,
}

/// A process being sampled.
#[derive(Debug)]
pub struct Target {
    reader: StackReader<PageCache<Process>>,
    stat: ThreadStatReader,
    names: HashMap<u64, Arc<str>>,
    names_read_at: Option<Instant>,
    cmdline: String,
    /// Counters.
    pub stats: TargetStats,
    /// Stop the target's threads while reading (`--blocking`).
    pub blocking: bool,
    /// The target's own thread ids → ours (identity outside containers).
    tid_map: NsTidMap,
    tid_map_read_at: Instant,
    in_pid_namespace: bool,
    /// Walk the stacks of sleeping threads.
    idle_stacks: bool,
    /// Where sleeping threads were parked at the last sample.
    parked: FxHashMap<u64, Parked>,
    /// Attribute samples to web requests and code categories.
    web: bool,
    /// Live thread states that have served a request.
    serving: rustc_hash::FxHashSet<u64>,
    endpoints: EndpointNamer,
    categories: crate::web::CategoryCache,
    /// The executable at attach time, to tell an exec from a torn read.
    exe_identity: Option<(u64, u64)>,
    /// `/proc/PID/statm`, kept open for RSS readings.
    statm: Option<StatmReader>,
    /// Report threads that have not run since the last tick from it, unread.
    reuse_unscheduled: bool,
    /// Threads' `schedstat`: which have not been on a CPU since the last tick.
    schedstat: SchedstatReader,
    /// `/proc/PID/task`, to see the thread count change.
    thread_counter: Option<ThreadCounter>,
    /// The last tick, to be reported again while its threads do not run.
    last_tick: LastTick,
}

/// What the last tick read, and what is needed to tell that it still holds.
#[derive(Debug, Default)]
struct LastTick {
    /// Every Python thread, in the interpreter's order.
    threads: Vec<LastThread>,
    /// The process's thread count before the read (`None`: unknown).
    thread_count: Option<u64>,
    /// Every thread was read (none dropped as torn or unreadable).
    complete: bool,
    /// When every thread was last read from memory, none reused.
    full_read_at: Option<Instant>,
}

/// One thread of the last tick.
#[derive(Debug)]
struct LastThread {
    /// Our id of the thread (`None`: unknown, never reused).
    host_tid: Option<i32>,
    /// Its `schedstat` before the tick's read (`None`: never reused).
    before: Option<SchedStat>,
    /// What was read, with the sample made of it: kept only for a thread
    /// that was not on a CPU (a running one is read again anyway).
    asleep: Option<(ThreadStack, SchedState, Sample)>,
}

/// One memory reading of one process (attach mode: read from outside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryReading {
    /// Time since the recording started.
    pub time: Duration,
    /// Process id.
    pub pid: i32,
    /// Resident set size in bytes (`None`: could not be read).
    pub rss: Option<u64>,
    /// Bytes in pymalloc arenas in use (`None`: unavailable or dropped).
    pub heap: Option<u64>,
    /// Why the heap cannot be read in this process, if it cannot.
    pub heap_unavailable: Option<Arc<str>>,
}

/// What [`Target::read_stacks`] read: each thread with its scheduler state,
/// and for each, the index of the last tick's thread it was taken from.
type ReadStacks = (Vec<(ThreadStack, SchedState)>, Vec<Option<usize>>);

/// A sleeping thread's stack, kept to be reused while it does not move.
#[derive(Debug)]
struct Parked {
    top_frame: u64,
    position: u64,
    frames: Vec<pyrometer_cpython::Frame>,
    truncated: bool,
}

impl Target {
    /// Attach to `pid`: check it, locate its interpreter.
    pub fn attach(pid: i32) -> Result<Target, TargetError> {
        let process = Process::attach(pid)?;
        let interp = locate(&process)?;
        let cmdline = process.cmdline().unwrap_or_default();
        let exe_identity = process.exe_identity();
        // Inside a container the interpreter stores the container's thread
        // ids; /proc here speaks ours.
        let tid_map = process.ns_tid_map().unwrap_or_default();
        let in_pid_namespace = process.in_other_pid_namespace();
        let ns_pid = process.ns_pid();
        let mut reader = StackReader::new(PageCache::new(process), interp);
        reader.learn_pthread_tid_offset(&tid_map.ns_tids(), ns_pid);
        Ok(Target {
            reader,
            stat: ThreadStatReader::new(),
            names: HashMap::new(),
            names_read_at: None,
            cmdline,
            stats: TargetStats::default(),
            blocking: false,
            tid_map,
            tid_map_read_at: Instant::now(),
            in_pid_namespace,
            idle_stacks: true,
            parked: FxHashMap::default(),
            web: true,
            serving: Default::default(),
            endpoints: EndpointNamer::default(),
            categories: Default::default(),
            exe_identity,
            statm: None,
            reuse_unscheduled: true,
            schedstat: SchedstatReader::new(),
            thread_counter: ThreadCounter::open(pid).ok(),
            last_tick: LastTick::default(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.reader.memory().inner().pid()
    }

    /// The command line.
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// The located interpreter.
    pub fn interpreter(&self) -> &Interpreter {
        self.reader.interpreter()
    }

    /// Whether the process now runs another executable than at attach.
    fn replaced(&self) -> bool {
        let now = self.reader.memory().inner().exe_identity();
        self.exe_identity.is_some() && now.is_some() && now != self.exe_identity
    }

    /// Whether the process is still alive.
    pub fn is_alive(&self) -> bool {
        self.reader.memory().inner().is_alive()
    }

    /// Page-cache counters (reads, syscalls).
    pub fn cache_stats(&self) -> CacheStats {
        self.reader.memory().stats()
    }

    /// Cap on frames per stack.
    pub fn set_max_depth(&mut self, depth: usize) {
        self.reader.max_depth = depth.max(1);
        self.last_tick = LastTick::default();
    }

    /// Whether a thread that has not been on a CPU since the last tick is
    /// reported again from it without reading it (on by default; off, every
    /// tick reads every thread, as before: for comparisons).
    pub fn set_reuse_unscheduled(&mut self, on: bool) {
        self.reuse_unscheduled = on;
        self.last_tick = LastTick::default();
    }

    fn refresh_names(&mut self, force: bool) {
        let stale = self
            .names_read_at
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1));
        if force || stale {
            self.names = self
                .reader
                .thread_names()
                .into_iter()
                .map(|(k, v)| (k, Arc::from(v)))
                .collect();
            self.names_read_at = Some(Instant::now());
        }
    }

    /// Read every thread's stack, stopping the threads first with
    /// `--blocking`. Each thread's scheduler state is read first: stacks of
    /// sleeping threads are not walked when idle stacks are not wanted, and
    /// are reused from the last sample when the thread has not moved.
    /// Threads in `unscheduled` (our thread id → index in `last`) have not
    /// run since the last tick: only their header is read (not their state
    /// nor their stack), they come back with `last`'s state and no frames,
    /// and the second vector gives the index in `last` to take them from.
    fn read_stacks(
        &mut self,
        unscheduled: &FxHashMap<i32, usize>,
        last: &[LastThread],
    ) -> Result<ReadStacks, SampleError> {
        self.stats.ticks += 1;
        let _stopped = if self.blocking {
            let tids = self
                .reader
                .memory()
                .inner()
                .threads()
                .map_err(|_| SampleError::ProcessGone)?;
            Some(StoppedThreads::stop(&tids).map_err(|e| SampleError::CannotStop(e.to_string()))?)
        } else {
            None
        };
        // The walk reads from a snapshot of the pages the last walk used. A
        // stack that needed pages beyond it, and moved while they were
        // fetched, is read again from a snapshot that now includes them.
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.reader.memory().clear();
            let fetches_at_start = self.reader.memory().stats().page_fetches;
            let pid = self.pid();
            let in_ns = self.in_pid_namespace;
            let want_idle = self.idle_stacks;
            let (stat, tid_map) = (&mut self.stat, &self.tid_map);
            let mut scheds: Vec<SchedState> = Vec::new();
            let parked = &self.parked;
            let serving = &self.serving;
            let mut reuse: Vec<bool> = Vec::new();
            let mut from_last: Vec<Option<usize>> = Vec::new();
            let result = self.reader.read_all_filtered(|st| {
                let host =
                    st.native_id
                        .and_then(|ns| if in_ns { tid_map.to_host(ns) } else { Some(ns) });
                let unmoved = host.and_then(|tid| {
                    let index = *unscheduled.get(&tid)?;
                    let (stack, sched, _) = last.get(index)?.asleep.as_ref()?;
                    (stack.tstate == st.tstate).then_some((index, *sched))
                });
                from_last.push(unmoved.map(|(index, _)| index));
                if let Some((_, sched)) = unmoved {
                    scheds.push(sched);
                    reuse.push(false);
                    return false;
                }
                let sched = match host {
                    Some(tid) => stat.state(pid, tid),
                    None => SchedState::Running,
                };
                scheds.push(sched);
                // Threads waiting for the GIL are wanted like running ones.
                let waits_for_gil = st.gil_requested && !st.holds_gil;
                let sleeping = sched != SchedState::Running && !waits_for_gil;
                let parked_here = sleeping
                    && parked
                        .get(&st.tstate)
                        .is_some_and(|p| p.top_frame == st.top_frame && st.top_frame != 0);
                reuse.push(parked_here);
                // A sleeping thread that was serving a request is still read, to
                // see when the request ends (a parked stack is reused cheaply).
                let wanted = want_idle || serving.contains(&st.tstate);
                !(sleeping && (!wanted || parked_here))
            });
            let mut stacks = match result {
                Ok(s) => s,
                Err(e) => {
                    let err = SampleError::from(e);
                    let gone = !self.is_alive();
                    return match err {
                        _ if gone => Err(SampleError::ProcessGone),
                        _ if self.replaced() => Err(SampleError::Replaced),
                        // The thread list changed under the walk (a thread
                        // started or ended): read again at once, a few times.
                        SampleError::Torn(_) if attempt < 3 => continue,
                        SampleError::Torn(_) => {
                            self.stats.torn += 1;
                            Err(err)
                        }
                        _ => Err(err),
                    };
                }
            };
            // Threads that ended are forgotten (thread states come and go,
            // torn or not this tick).
            if !self.serving.is_empty() {
                let present: rustc_hash::FxHashSet<u64> =
                    stacks.iter().map(|st| st.tstate).collect();
                self.serving.retain(|t| present.contains(t));
            }
            // A parked thread's stack is reused only if it is still at the same
            // instruction of the same frame.
            for (st, reused) in stacks.iter_mut().zip(&reuse) {
                if !*reused {
                    continue;
                }
                let position = self.reader.frame_position(st.top_frame).unwrap_or(u64::MAX);
                match self.parked.get(&st.tstate) {
                    Some(p) if p.position == position => {
                        st.frames = p.frames.clone();
                        st.truncated = p.truncated;
                        st.walked = true;
                    }
                    _ => {
                        if let Ok(full) = self.reader.read_thread(st.tstate, st.holds_gil) {
                            *st = full;
                        }
                    }
                }
            }
            // A stack read entirely from the snapshot taken at the start of the
            // tick (one vectored read) is consistent. If the walk had to fetch
            // more pages while the target ran, a running thread whose innermost
            // frame moved meanwhile may be torn: drop it, count it.
            let snapshot_only = self.reader.memory().stats().page_fetches == fetches_at_start
                && self.reader.memory().snapshot_duration() <= SLOW_SNAPSHOT;
            let layout = self.reader.layout();
            let live = self.reader.memory().inner();
            let mut out = Vec::with_capacity(stacks.len());
            let mut out_from_last = Vec::with_capacity(stacks.len());
            let mut dropped = 0;
            for ((st, sched), index) in stacks.into_iter().zip(scheds).zip(from_last) {
                let moved =
                    || !top_frame_of(live, layout, st.tstate).is_ok_and(|top| top == st.top_frame);
                if st.torn
                    || (st.walked && !snapshot_only && sched == SchedState::Running && moved())
                {
                    dropped += 1;
                    continue;
                }
                out.push((st, sched));
                out_from_last.push(index);
            }
            if dropped > 0 && attempt < READ_ATTEMPTS {
                self.stats.torn_retries += dropped;
                // Read again at once. Pausing 20 µs first (the stack may
                // leave a busy phase) cost more than it saved: on churn.py
                // pyrometer's CPU 0.55–0.63 s vs 0.36–0.41 s over 5 s, torn
                // 0.18–0.58 % vs 0.04–0.18 % (a sleep's wake-up costs about
                // as much CPU as a read on this VM).
                continue;
            }
            self.stats.torn_threads += dropped;
            // Remember where sleeping threads are parked.
            {
                let mut parked = FxHashMap::default();
                let mut parked_before = std::mem::take(&mut self.parked);
                for ((st, sched), index) in out.iter().zip(&out_from_last) {
                    if index.is_some() {
                        // Not run since: parked where it was (not read again).
                        if let Some(p) = parked_before.remove(&st.tstate) {
                            parked.insert(st.tstate, p);
                        }
                    } else if *sched != SchedState::Running && st.walked {
                        let position = self.reader.frame_position(st.top_frame).unwrap_or(u64::MAX);
                        parked.insert(
                            st.tstate,
                            Parked {
                                top_frame: st.top_frame,
                                position,
                                frames: st.frames.clone(),
                                truncated: st.truncated,
                            },
                        );
                    }
                }
                self.parked = parked;
            }
            return Ok((out, out_from_last));
        }
    }

    /// Samples of `stacks`; those with an index in `from_last` are `last`'s
    /// samples again, at `time` (the thread has not run: same request too).
    fn make_samples(
        &mut self,
        stacks: &[(ThreadStack, SchedState)],
        time: Duration,
        from_last: &[Option<usize>],
        last: &[LastThread],
    ) -> Vec<Sample> {
        if stacks
            .iter()
            .any(|(s, _)| !self.names.contains_key(&s.thread_id))
        {
            self.refresh_names(false);
        }
        let pid = self.pid();
        let mut out = Vec::with_capacity(stacks.len());
        for (i, (st, sched)) in stacks.iter().enumerate() {
            let earlier = from_last
                .get(i)
                .copied()
                .flatten()
                .and_then(|index| last.get(index)?.asleep.as_ref());
            if let Some((_, _, sample)) = earlier {
                out.push(Sample {
                    time,
                    ..sample.clone()
                });
                continue;
            }
            let host_tid = st.native_id.and_then(|ns| self.host_tid(ns));
            let state = match sched {
                _ if st.gil_requested && !st.holds_gil => ThreadState::GilWait,
                SchedState::Running if st.holds_gil => ThreadState::Python,
                SchedState::Running => ThreadState::Native,
                _ => ThreadState::Idle,
            };
            out.push(Sample {
                time,
                pid,
                thread_id: st.thread_id,
                native_id: host_tid.or(st.native_id),
                thread_name: self.names.get(&st.thread_id).cloned(),
                state,
                holds_gil: st.holds_gil,
                frames: st
                    .frames
                    .iter()
                    .map(|f| SampledFrame {
                        name: f.name.clone(),
                        filename: f.code.filename.clone(),
                        line: f.line.unwrap_or(0),
                        first_line: f.code.first_line,
                        code_key: f.code.addr,
                    })
                    .collect(),
                truncated: st.truncated,
                walked: st.walked,
                request: if self.web {
                    let found = match self.reader.request_of(st) {
                        Some(r) => Some(r),
                        // A sync endpoint in anyio's thread pool.
                        None => self.reader.threadpool_request_of(st),
                    };
                    found.map(|r| SampledRequest {
                        endpoint: self.endpoints.name(&r, &st.frames),
                        key: r.key,
                        method: r.method,
                        path: r.path,
                    })
                } else {
                    None
                },
                category: if self.web {
                    self.categories.stack_category(&st.frames)
                } else {
                    None
                },
            });
        }
        // A thread that has served a request stays read while it sleeps (a
        // request may start and block before a tick sees it run).
        for (s, (st, _)) in out.iter().zip(stacks) {
            if s.request.is_some() {
                self.serving.insert(st.tstate);
            }
        }
        self.stats.samples += out.len() as u64;
        out
    }

    /// Our id of a thread the target knows as `ns_tid`. Threads come and go:
    /// the map is re-read when an id is missing, at most every 250 ms.
    fn host_tid(&mut self, ns_tid: i32) -> Option<i32> {
        if !self.in_pid_namespace {
            // Outside containers the ids are ours already.
            return Some(ns_tid);
        }
        if let Some(t) = self.tid_map.to_host(ns_tid) {
            return Some(t);
        }
        if self.tid_map_read_at.elapsed() > Duration::from_millis(250) {
            self.tid_map_read_at = Instant::now();
            if let Ok(m) = self.reader.memory().inner().ns_tid_map() {
                self.tid_map = m;
            }
        }
        self.tid_map.to_host(ns_tid)
    }

    /// Read the process's RSS and the interpreter's pymalloc heap in use.
    /// Cheap: one `pread` of a kept-open statm and one or two small remote
    /// reads. A failed or implausible heap read is left out, not guessed.
    pub fn read_memory(&mut self, time: Duration) -> MemoryReading {
        let pid = self.pid();
        if self.statm.is_none() {
            self.statm = StatmReader::open(pid).ok();
        }
        let rss = self.statm.as_mut().and_then(|s| s.rss_bytes());
        let interp = self.reader.interpreter();
        let (heap, heap_unavailable) = match pyrometer_cpython::read_pymalloc(
            self.reader.memory().inner(),
            &interp.layout,
            &interp.heap,
        ) {
            Ok(r) => (Some(r.bytes), None),
            Err(pyrometer_cpython::HeapError::Unavailable(why)) => (None, Some(Arc::from(why))),
            Err(_) => (None, None),
        };
        MemoryReading {
            time,
            pid,
            rss,
            heap,
            heap_unavailable,
        }
    }

    /// Sample every Python thread once. `time` is stamped on the samples.
    ///
    /// A thread that was not on a CPU at the last tick and has not been
    /// switched onto one since (its `schedstat` did not move) cannot have
    /// changed its stack, state, GIL flags or request: its last sample is
    /// reported again without reading its memory or its state. When that
    /// holds for every thread and the thread count is the same, nothing of
    /// the process is read at all. Every thread is read again at least every
    /// [`FULL_READ_EVERY`].
    pub fn sample(&mut self, time: Duration) -> Result<Vec<Sample>, SampleError> {
        // Stopping threads with ptrace wakes each of them: nothing would be
        // found unscheduled.
        if !self.reuse_unscheduled || self.blocking || !self.schedstat.available() {
            let (stacks, _) = self.read_stacks(&FxHashMap::default(), &[])?;
            let samples = self.make_samples(&stacks, time, &[], &[]);
            self.close_files_of_ended_threads(&samples);
            return Ok(samples);
        }
        let started = Instant::now();
        let mut last = std::mem::take(&mut self.last_tick);
        let pid = self.pid();
        // Read before the memory is: the baseline of the next tick, so that
        // any run after it shows.
        // Only a tick after one at which every thread was asleep may find
        // that nothing ran (a thread on a CPU then has no baseline now): the
        // thread count is needed, and read, only then.
        let all_asleep =
            !last.threads.is_empty() && last.threads.iter().all(|t| t.asleep.is_some());
        let thread_count = if all_asleep {
            self.thread_counter.as_ref().and_then(|c| c.count())
        } else {
            None
        };
        let full_due = last
            .full_read_at
            .is_none_or(|at| started.saturating_duration_since(at) >= FULL_READ_EVERY);
        let mut readings: FxHashMap<i32, SchedStat> = FxHashMap::default();
        let mut unscheduled: FxHashMap<i32, usize> = FxHashMap::default();
        for (index, thread) in last.threads.iter().enumerate() {
            // A thread that was on a CPU at the last tick is read in full
            // whatever it did since; its baseline is taken once it is found
            // asleep (so it is read in full one more tick after falling
            // asleep), which saves a schedstat read per busy thread per tick.
            if thread.asleep.is_none() {
                continue;
            }
            let Some(tid) = thread.host_tid else { continue };
            let Some(now) = self.schedstat.read(pid, tid) else {
                continue;
            };
            readings.insert(tid, now);
            if thread.asleep.is_some() && thread.before.is_some_and(|b| !now.ran_since(&b)) {
                unscheduled.insert(tid, index);
            }
        }
        if full_due {
            unscheduled.clear();
        }
        let nothing_ran = !unscheduled.is_empty()
            && unscheduled.len() == last.threads.len()
            && last.complete
            && thread_count.is_some()
            && thread_count == last.thread_count;
        if nothing_ran {
            let samples: Vec<Sample> = last
                .threads
                .iter()
                .filter_map(|t| t.asleep.as_ref())
                .map(|(_, _, sample)| Sample {
                    time,
                    ..sample.clone()
                })
                .collect();
            let n = samples.len() as u64;
            self.stats.ticks += 1;
            self.stats.unread_ticks += 1;
            self.stats.samples += n;
            self.stats.reused_samples += n;
            self.last_tick = last;
            return Ok(samples);
        }
        let torn_before = self.stats.torn_threads;
        let (stacks, from_last) = self.read_stacks(&unscheduled, &last.threads)?;
        let complete = self.stats.torn_threads == torn_before;
        let samples = self.make_samples(&stacks, time, &from_last, &last.threads);
        let reused = from_last.iter().flatten().count();
        self.stats.reused_samples += reused as u64;
        let in_ns = self.in_pid_namespace;
        let mut threads = Vec::with_capacity(stacks.len());
        for (((st, sched), sample), index) in stacks.into_iter().zip(&samples).zip(&from_last) {
            let native_id = st.native_id;
            let asleep = match index.and_then(|i| last.threads.get_mut(i)) {
                // Not run since: what was read then still holds.
                Some(earlier) => earlier.asleep.take(),
                None => (sched != SchedState::Running).then(|| (st, sched, sample.clone())),
            };
            let host_tid = native_id.and_then(|ns| {
                if in_ns {
                    self.tid_map.to_host(ns)
                } else {
                    Some(ns)
                }
            });
            threads.push(LastThread {
                host_tid,
                before: host_tid.and_then(|tid| readings.get(&tid).copied()),
                asleep,
            });
        }
        self.close_files_of_ended_threads(&samples);
        self.last_tick = LastTick {
            threads,
            thread_count,
            complete,
            full_read_at: if reused == 0 {
                Some(started)
            } else {
                last.full_read_at
            },
        };
        Ok(samples)
    }

    /// Threads come and go (thread pools, one thread per task): the
    /// scheduler-state files of those that ended are closed once they
    /// outnumber the live ones, so a long recording neither runs out of
    /// file descriptors nor grows.
    fn close_files_of_ended_threads(&mut self, samples: &[Sample]) {
        let open = self.stat.len().max(self.schedstat.len());
        if open <= samples.len() + ENDED_THREADS_KEPT {
            return;
        }
        let alive: Vec<i32> = samples.iter().filter_map(|s| s.native_id).collect();
        self.stat.retain(&alive);
        self.schedstat.retain(&alive);
    }

    /// Resolve frames the allocation hook captured inside the target (code
    /// object, byte offset; innermost first) to functions and lines. Frames
    /// whose code object is not (or no longer) readable are left out; an
    /// error when none could be resolved although some were captured.
    pub fn resolve_captured(
        &mut self,
        frames: impl IntoIterator<Item = (u64, Option<u64>)>,
    ) -> Result<Vec<SampledFrame>, SampleError> {
        // Pages cached by an earlier read may predate these code objects.
        self.reader.memory().clear();
        let mut out = Vec::new();
        let mut failed = 0usize;
        for (code, offset) in frames {
            match self.reader.captured_frame(code, offset) {
                Ok(Some(f)) => out.push(SampledFrame {
                    name: f.name.clone(),
                    filename: f.code.filename.clone(),
                    line: f.line.unwrap_or(0),
                    first_line: f.code.first_line,
                    code_key: f.code.addr,
                }),
                Ok(None) => {}
                Err(e @ CpythonError::Memory(MemoryError::ProcessGone)) => return Err(e.into()),
                Err(_) => failed += 1,
            }
        }
        if out.is_empty() && failed > 0 {
            return Err(SampleError::Torn(
                "the captured code objects are unreadable".into(),
            ));
        }
        Ok(out)
    }

    /// Whether samples are attributed to web requests and categories (on by
    /// default; it costs a dict read per thread serving a request).
    pub fn set_web_attribution(&mut self, on: bool) {
        self.web = on;
        self.last_tick = LastTick::default();
    }

    /// Whether stacks of idle threads are read (`--idle`, `dump`). Without
    /// it, idle threads are still counted (their state) but not walked.
    pub fn set_idle_stacks(&mut self, on: bool) {
        self.idle_stacks = on;
        self.last_tick = LastTick::default();
        if !on {
            self.parked.clear();
        }
    }

    /// Every thread with its stack and, if asked, its locals (for `dump`).
    pub fn dump(&mut self, with_locals: bool) -> Result<Vec<ThreadSummary>, SampleError> {
        self.refresh_names(true);
        // A torn read is likely transient: retry a few times.
        let mut last = SampleError::NotInitialized;
        for attempt in 0..10 {
            let torn_before = self.stats.torn_threads;
            let stacks = match self.read_stacks(&FxHashMap::default(), &[]) {
                // A dump shows every thread: if one was torn, read again.
                Ok(_) if self.stats.torn_threads > torn_before && attempt < 9 => {
                    last = SampleError::Torn("a thread's stack changed while it was read".into());
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Ok((s, _)) => s,
                Err(SampleError::Torn(e)) => {
                    last = SampleError::Torn(e);
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let samples = self.make_samples(&stacks, Duration::ZERO, &[], &[]);
            let out = samples
                .into_iter()
                .zip(stacks.iter().map(|(st, _)| st))
                .map(|(sample, st)| {
                    let locals = if with_locals {
                        st.frames
                            .iter()
                            .map(|f| {
                                self.reader
                                    .locals(f)
                                    .into_iter()
                                    .map(|(name, obj)| (name.to_string(), self.reader.render(obj)))
                                    .collect()
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    ThreadSummary { sample, locals }
                })
                .collect();
            return Ok(out);
        }
        Err(last)
    }
}
