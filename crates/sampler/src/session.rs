//! Many processes from one sampling loop: a root target and, with
//! `follow_children`, every descendant Python process, found through
//! `/proc/PID/task/*/children` (never by scanning all of /proc). Workers
//! that appear later are attached within a scan interval; workers that exit
//! are dropped without errors.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pyrometer_cpython::CpythonError;
use pyrometer_process::Process;

use crate::target::{MemoryReading, Sample, SampleError, Target, TargetError};

/// How often memory (RSS, pymalloc heap) is read unless told otherwise: it
/// costs a few microseconds per process, far less than a stack walk.
pub const DEFAULT_MEMORY_INTERVAL: Duration = Duration::from_millis(100);

/// Most processes followed at once.
const MAX_TARGETS: usize = 1024;
/// Most descendants examined per scan.
const MAX_DESCENDANTS: usize = 8192;
/// A child that is still not a readable Python after this long is ignored.
const GIVE_UP_AFTER: Duration = Duration::from_secs(3);

/// What happened to the set of targets during a tick.
#[derive(Debug, Default, Clone)]
pub struct SessionEvents {
    /// PIDs attached.
    pub attached: Vec<i32>,
    /// PIDs that exited (or became unreadable) and were dropped.
    pub exited: Vec<i32>,
    /// PIDs that exec'd another program and were dropped (also in `exited`).
    pub replaced: Vec<i32>,
    /// Memory readings taken at this tick (every memory interval).
    pub memory: Vec<MemoryReading>,
}

/// Counters over the whole session.
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionStats {
    /// Ticks on which at least one read failed.
    pub error_ticks: u64,
    /// Per-process reads that failed (torn or transient).
    pub errors: u64,
    /// Thread samples dropped because the stack moved during the walk.
    pub torn_threads: u64,
    /// Thread reads found torn and read again within their tick.
    pub torn_retries: u64,
    /// Thread samples reported again unread: the thread had not been on a
    /// CPU since the last tick.
    pub reused_samples: u64,
}

/// The set of processes sampled together.
#[derive(Debug)]
pub struct Session {
    root_pid: i32,
    targets: Vec<Target>,
    follow_children: bool,
    scan_every: Duration,
    last_scan: Option<Instant>,
    /// Children that are not (yet) readable Pythons: first seen, and given up.
    pending: HashMap<i32, (Instant, bool)>,
    max_depth: usize,
    blocking: bool,
    idle_stacks: bool,
    /// Read memory this often (`None`: never).
    memory_interval: Option<Duration>,
    /// Tick time of the last memory readings.
    last_memory: Option<Duration>,
    /// Counters.
    pub stats: SessionStats,
    /// Why the last failed read failed, for the summary.
    pub last_error: Option<String>,
}

impl Session {
    /// A session over `root`, following its descendants if asked.
    pub fn new(root: Target, follow_children: bool) -> Self {
        Session {
            root_pid: root.pid(),
            targets: vec![root],
            follow_children,
            scan_every: Duration::from_millis(500),
            last_scan: None,
            pending: HashMap::new(),
            max_depth: pyrometer_cpython::stack::DEFAULT_MAX_DEPTH,
            blocking: false,
            idle_stacks: true,
            memory_interval: Some(DEFAULT_MEMORY_INTERVAL),
            last_memory: None,
            stats: SessionStats::default(),
            last_error: None,
        }
    }

    /// A session whose root is not itself a Python process (a shell, a
    /// process manager): only its Python descendants are sampled.
    pub fn children_of(root_pid: i32) -> Self {
        Session {
            root_pid,
            targets: Vec::new(),
            follow_children: true,
            scan_every: Duration::from_millis(500),
            last_scan: None,
            pending: HashMap::new(),
            max_depth: pyrometer_cpython::stack::DEFAULT_MAX_DEPTH,
            blocking: false,
            idle_stacks: true,
            memory_interval: Some(DEFAULT_MEMORY_INTERVAL),
            last_memory: None,
            stats: SessionStats::default(),
            last_error: None,
        }
    }

    /// Cap on frames per stack, for every target.
    pub fn set_max_depth(&mut self, depth: usize) {
        self.max_depth = depth;
        for t in &mut self.targets {
            t.set_max_depth(depth);
        }
    }

    /// Stop threads while reading (`--blocking`), for every target.
    pub fn set_blocking(&mut self, blocking: bool) {
        self.blocking = blocking;
        for t in &mut self.targets {
            t.blocking = blocking;
        }
    }

    /// Walk the stacks of idle threads (`--idle`), for every target.
    pub fn set_idle_stacks(&mut self, on: bool) {
        self.idle_stacks = on;
        for t in &mut self.targets {
            t.set_idle_stacks(on);
        }
    }

    /// Read every target's RSS and pymalloc heap every `interval` (`None`:
    /// never).
    pub fn set_memory_interval(&mut self, interval: Option<Duration>) {
        self.memory_interval = interval.filter(|d| !d.is_zero());
    }

    /// The targets being sampled.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The root PID.
    pub fn root_pid(&self) -> i32 {
        self.root_pid
    }

    /// True when nothing is left to sample and the root is gone.
    pub fn finished(&self) -> bool {
        self.targets.is_empty() && !Process::attach(self.root_pid).is_ok_and(|p| p.is_alive())
    }

    /// Sample every target once. Dead targets are dropped; new children are
    /// attached every scan interval.
    pub fn sample(&mut self, time: Duration) -> (Vec<Sample>, SessionEvents) {
        let mut events = SessionEvents::default();
        if self.follow_children
            && self
                .last_scan
                .is_none_or(|t| t.elapsed() >= self.scan_every)
        {
            self.last_scan = Some(Instant::now());
            self.scan_children(&mut events);
        }
        let mut out = Vec::new();
        let mut failed = false;
        let mut i = 0;
        while i < self.targets.len() {
            let target = &mut self.targets[i];
            let (torn_before, retries_before, reused_before) = (
                target.stats.torn_threads,
                target.stats.torn_retries,
                target.stats.reused_samples,
            );
            let result = target.sample(time);
            self.stats.torn_threads += target.stats.torn_threads - torn_before;
            self.stats.torn_retries += target.stats.torn_retries - retries_before;
            self.stats.reused_samples += target.stats.reused_samples - reused_before;
            match result {
                Ok(samples) => {
                    out.extend(samples);
                    i += 1;
                }
                Err(SampleError::ProcessGone) => {
                    events.exited.push(target.pid());
                    self.targets.swap_remove(i);
                }
                Err(SampleError::Replaced) => {
                    events.exited.push(target.pid());
                    events.replaced.push(target.pid());
                    self.targets.swap_remove(i);
                }
                Err(e) => {
                    failed = true;
                    self.stats.errors += 1;
                    self.last_error = Some(format!("process {}: {e}", target.pid()));
                    i += 1;
                }
            }
        }
        if failed {
            self.stats.error_ticks += 1;
        }
        if let Some(every) = self.memory_interval {
            let due = self
                .last_memory
                .is_none_or(|last| time.saturating_sub(last) >= every);
            if due {
                self.last_memory = Some(time);
                events.memory = self
                    .targets
                    .iter_mut()
                    .map(|t| t.read_memory(time))
                    .collect();
            }
        }
        (out, events)
    }

    fn scan_children(&mut self, events: &mut SessionEvents) {
        let Ok(root) = Process::attach(self.root_pid) else {
            return;
        };
        let mut seen = Vec::new();
        let mut queue = root.children();
        // A root that is not (or no longer) sampled may become Python by
        // exec: a launcher script or shim, or a process that re-execs.
        if !self.targets.iter().any(|t| t.pid() == self.root_pid) {
            queue.push(self.root_pid);
        }
        while let Some(pid) = queue.pop() {
            if seen.len() >= MAX_DESCENDANTS || seen.contains(&pid) {
                continue;
            }
            seen.push(pid);
            if let Ok(p) = Process::attach(pid) {
                queue.extend(p.children());
            }
        }
        self.pending.retain(|pid, _| seen.contains(pid));
        for pid in seen {
            if self.targets.len() >= MAX_TARGETS {
                break;
            }
            if self.targets.iter().any(|t| t.pid() == pid) {
                continue;
            }
            let entry = self.pending.entry(pid).or_insert((Instant::now(), false));
            if entry.1 {
                continue;
            }
            match Target::attach(pid) {
                Ok(mut t) => {
                    t.set_max_depth(self.max_depth);
                    t.blocking = self.blocking;
                    t.set_idle_stacks(self.idle_stacks);
                    self.pending.remove(&pid);
                    events.attached.push(pid);
                    self.targets.push(t);
                }
                Err(TargetError::Cpython(CpythonError::NotPython { .. }))
                    if entry.0.elapsed() < GIVE_UP_AFTER => {}
                Err(_) => {
                    // Not Python (or not readable) for good: ignore quietly.
                    if entry.0.elapsed() >= GIVE_UP_AFTER {
                        entry.1 = true;
                    }
                }
            }
        }
    }
}
