//! Allocation sampling of launched commands (`record --memory`): reads the
//! events the preloaded hook (pyrometer-memhook) publishes, and while the
//! allocating thread waits inside the allocator, reads that thread's Python
//! stack from outside. Runs on a thread of its own.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pyrometer_memhook::{
    install_library, monotonic_ns, sample_weight, EventKind, HookStats, MemhookError, SharedRing,
    ENV_RING,
};

use crate::target::{Sample, Target};

/// A stack read later than this after the allocation may no longer be the
/// allocating one (the hook waits at most 2 ms): it is not attributed.
const FRESH_FOR: Duration = Duration::from_micros(1500);
/// How often a process whose interpreter is not readable yet is retried.
const RETRY_ATTACH: Duration = Duration::from_millis(20);
/// How often exited processes are forgotten.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// Most processes followed at once.
const MAX_PROCESSES: usize = 4096;

/// One event of the allocation sampler.
#[derive(Debug, Clone)]
pub enum MemoryEvent {
    /// A sampled allocation.
    Alloc {
        /// Since the recording started.
        time: Duration,
        /// Process.
        pid: i32,
        /// Block address (to match its free).
        addr: u64,
        /// Requested bytes.
        size: u64,
        /// Estimated bytes this sample stands for.
        bytes: f64,
        /// The allocating thread's stack; `None` when it could not be read
        /// in time (not attributed).
        sample: Option<Sample>,
    },
    /// A process that reported allocations exited: its blocks are gone.
    Exited {
        /// Since the recording started.
        time: Duration,
        /// Process.
        pid: i32,
    },
    /// A sampled block was freed.
    Free {
        /// Since the recording started.
        time: Duration,
        /// Process.
        pid: i32,
        /// Block address.
        addr: u64,
    },
}

/// Counters of the allocation sampler.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryStats {
    /// Sampled allocations read.
    pub allocations: u64,
    /// Of them, attributed to a Python stack.
    pub attributed: u64,
    /// Frees of sampled blocks read.
    pub frees: u64,
    /// Sum over sampled allocations of the time from the allocation to
    /// pyrometer noticing it (wake-up latency), ns.
    pub notice_ns: u64,
    /// Sum over sampled allocations of the time spent reading the stack, ns.
    pub read_ns: u64,
    /// Counters of the hooks in the target.
    pub hook: HookStats,
}

enum Process {
    Ready(Box<Target>),
    NotReadable { last_try: Instant },
}

/// Reads the hook's ring and the allocating threads' stacks.
pub struct MemorySampler {
    ring: SharedRing,
    library: std::path::PathBuf,
    mean_bytes: u64,
    start_ns: u64,
    max_depth: usize,
    processes: HashMap<i32, Process>,
    /// Every process that reported something, to tell when it exits.
    seen_pids: std::collections::HashSet<i32>,
    stats: MemoryStats,
}

impl std::fmt::Debug for MemorySampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySampler")
            .field("ring", &self.ring)
            .finish()
    }
}

impl MemorySampler {
    /// Set up the ring and the hook library: one sample per `mean_bytes`
    /// allocated, on average.
    pub fn new(mean_bytes: u64, max_depth: usize) -> Result<MemorySampler, MemhookError> {
        let library = install_library()?;
        let ring = SharedRing::create(mean_bytes, true)?;
        Ok(MemorySampler {
            ring,
            library,
            mean_bytes: mean_bytes.max(1),
            start_ns: monotonic_ns(),
            max_depth,
            processes: HashMap::new(),
            seen_pids: Default::default(),
            stats: MemoryStats::default(),
        })
    }

    /// The environment the launched command needs: the preloaded hook, the
    /// ring, and `PYTHONMALLOC=malloc` so Python objects reach the hook.
    pub fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut preload = self.library.clone().into_os_string();
        if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
            preload.push(":");
            preload.push(existing);
        }
        vec![
            ("LD_PRELOAD".into(), preload),
            ("PYTHONMALLOC".into(), "malloc".into()),
            (ENV_RING.into(), self.ring.path().as_os_str().to_owned()),
        ]
    }

    /// Read events until `stop`, handing each to `sink`. Returns the counters.
    pub fn run(mut self, stop: &AtomicBool, mut sink: impl FnMut(MemoryEvent)) -> MemoryStats {
        let mut last_reap = Instant::now();
        loop {
            self.ring.heartbeat();
            while let Some(event) = self.ring.next_event() {
                let e = self.handle(event);
                sink(e);
                self.ring.heartbeat();
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if last_reap.elapsed() >= REAP_EVERY {
                last_reap = Instant::now();
                let time = self.since_start(monotonic_ns());
                for pid in self.reap() {
                    sink(MemoryEvent::Exited { time, pid });
                }
            }
            self.ring.wait(Duration::from_millis(2));
        }
        self.stats.hook = self.ring.stats();
        self.stats
    }

    fn since_start(&self, ns: u64) -> Duration {
        Duration::from_nanos(ns.saturating_sub(self.start_ns))
    }

    fn handle(&mut self, e: pyrometer_memhook::Event) -> MemoryEvent {
        let time = self.since_start(e.time_ns);
        if e.pid > 0 && self.seen_pids.len() < MAX_PROCESSES * 4 {
            self.seen_pids.insert(e.pid);
        }
        match e.kind {
            EventKind::Free => {
                self.stats.frees += 1;
                MemoryEvent::Free {
                    time,
                    pid: e.pid,
                    addr: e.addr,
                }
            }
            EventKind::Alloc => {
                self.stats.allocations += 1;
                let noticed = monotonic_ns();
                let sample = self.read_stack(e.pid, e.tid, time, e.time_ns);
                self.ring.ack(e.index);
                let done = monotonic_ns();
                self.stats.notice_ns += noticed.saturating_sub(e.time_ns);
                self.stats.read_ns += done.saturating_sub(noticed);
                if sample.is_some() {
                    self.stats.attributed += 1;
                }
                MemoryEvent::Alloc {
                    time,
                    pid: e.pid,
                    addr: e.addr,
                    size: e.size,
                    bytes: sample_weight(e.size, self.mean_bytes),
                    sample,
                }
            }
        }
    }

    /// The stack of thread `tid`, if read while it still waited.
    fn read_stack(&mut self, pid: i32, tid: i32, time: Duration, at_ns: u64) -> Option<Sample> {
        if pid <= 0 || tid <= 0 {
            return None;
        }
        let fresh = |now: u64| Duration::from_nanos(now.saturating_sub(at_ns)) < FRESH_FOR;
        if !fresh(monotonic_ns()) {
            return None;
        }
        if !matches!(self.processes.get(&pid), Some(Process::Ready(_))) {
            let retry = match self.processes.get(&pid) {
                Some(Process::NotReadable { last_try }) => last_try.elapsed() >= RETRY_ATTACH,
                _ => self.processes.len() < MAX_PROCESSES,
            };
            if !retry {
                return None;
            }
            let p = match Target::attach(pid) {
                Ok(mut t) => {
                    t.set_max_depth(self.max_depth);
                    // The allocating thread waits on a futex: it looks idle.
                    t.set_idle_stacks(true);
                    Process::Ready(Box::new(t))
                }
                Err(_) => Process::NotReadable {
                    last_try: Instant::now(),
                },
            };
            self.processes.insert(pid, p);
            // Attaching took a while: the thread has likely moved on.
            if !fresh(monotonic_ns()) {
                return None;
            }
        }
        let Some(Process::Ready(target)) = self.processes.get_mut(&pid) else {
            return None;
        };
        let samples = target.sample(time).ok()?;
        let found = samples.into_iter().find(|s| s.native_id == Some(tid))?;
        fresh(monotonic_ns()).then_some(found)
    }

    /// Forget processes that exited; returns them.
    fn reap(&mut self) -> Vec<i32> {
        let gone: Vec<i32> = self
            .seen_pids
            .iter()
            .copied()
            .filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            .collect();
        for pid in &gone {
            self.processes.remove(pid);
            self.seen_pids.remove(pid);
            self.ring.forget_process(*pid);
        }
        gone
    }
}
