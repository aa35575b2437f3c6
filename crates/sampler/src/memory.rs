//! Allocation sampling of launched commands (`record --memory`): reads the
//! events the preloaded hook (pyrometer-memhook) publishes. The hook walks
//! the allocating thread's frames itself, in the target (code objects and
//! instruction offsets, following the walk recipe written here once a
//! process's interpreter is located); this side resolves them to functions
//! and lines from outside, with the code-object cache, whenever it gets to
//! them: nothing in the target waits for pyrometer. Runs on a thread of its
//! own.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyrometer_cpython::layout::{known_layout, FrameModel, FrameRoot};
use pyrometer_cpython::{Interpreter, Layout, Version};
use pyrometer_memhook::{
    install_library, monotonic_ns, sample_weight, CapturedFrame, CapturedStack, EventKind,
    HookStats, MemhookError, RecipeFrames, RecipeRoot, SharedRing, WalkRecipe, ENV_RING,
};

use crate::target::{Sample, SampledFrame, Target, ThreadState};
use crate::web::SampledRequest;

/// How often a process whose interpreter is not readable yet is retried.
const RETRY_ATTACH: Duration = Duration::from_millis(20);
/// How often exited processes are forgotten.
const REAP_EVERY: Duration = Duration::from_secs(1);
/// Most processes followed at once.
const MAX_PROCESSES: usize = 4096;
/// The request a thread serves is read from outside (the hook cannot read
/// it), at most this often per process: an allocation is attributed to the
/// request its thread served at the last read.
const REQUEST_READ_EVERY: Duration = Duration::from_millis(20);
/// Test hook: handle each event no earlier than this many milliseconds
/// after it happened (a slow pyrometer), to check that stacks do not depend
/// on when pyrometer reads them.
const ENV_READER_DELAY: &str = "PYROMETER_TEST_MEMORY_READER_DELAY_MS";

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
        /// The allocating thread's stack; `None` when the hook could not
        /// walk it or its code objects could not be read (not attributed).
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
    /// Of them, on a thread running no Python code (native threads).
    pub native: u64,
    /// Of them, with a captured stack whose code objects could not be read
    /// (the process had exited, or its interpreter was not located).
    pub unresolved: u64,
    /// Frees of sampled blocks read.
    pub frees: u64,
    /// Sum over sampled allocations of the time from the allocation to
    /// pyrometer handling it, ns (the target does not wait for it).
    pub notice_ns: u64,
    /// Sum over sampled allocations of the time spent resolving the stack, ns.
    pub read_ns: u64,
    /// Counters of the hooks in the target.
    pub hook: HookStats,
}

struct Followed {
    target: Box<Target>,
    /// Requests by thread id at the last outside read.
    requests: HashMap<i32, SampledRequest>,
    requests_read_at: Option<Instant>,
}

enum Process {
    Ready(Followed),
    NotReadable { last_try: Instant },
}

/// Reads the hook's ring and resolves the captured stacks.
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
    reader_delay: Duration,
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
        let ring = SharedRing::create(mean_bytes)?;
        let reader_delay = std::env::var(ENV_READER_DELAY)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(|ms| Duration::from_millis(ms.min(10_000)))
            .unwrap_or_default();
        Ok(MemorySampler {
            ring,
            library,
            mean_bytes: mean_bytes.max(1),
            start_ns: monotonic_ns(),
            max_depth,
            processes: HashMap::new(),
            seen_pids: Default::default(),
            stats: MemoryStats::default(),
            reader_delay,
        })
    }

    /// The environment the launched command needs: the preloaded hook and
    /// the ring. (No `PYTHONMALLOC=malloc`: the hook wraps Python's own
    /// allocator domains, so pymalloc keeps its speed.)
    pub fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut preload = self.library.clone().into_os_string();
        if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
            preload.push(":");
            preload.push(existing);
        }
        vec![
            ("LD_PRELOAD".into(), preload),
            (ENV_RING.into(), self.ring.path().as_os_str().to_owned()),
        ]
    }

    /// Read events until `stop`, handing each to `sink`. Returns the counters.
    pub fn run(mut self, stop: &AtomicBool, mut sink: impl FnMut(MemoryEvent)) -> MemoryStats {
        let mut last_reap = Instant::now();
        loop {
            self.ring.heartbeat();
            while let Some(event) = self.ring.next_event() {
                self.delay_until(event.time_ns, stop);
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

    /// With the test delay set, wait until the event is that old.
    fn delay_until(&self, event_ns: u64, stop: &AtomicBool) {
        if self.reader_delay.is_zero() {
            return;
        }
        let due = event_ns.saturating_add(self.reader_delay.as_nanos() as u64);
        while monotonic_ns() < due && !stop.load(Ordering::Relaxed) {
            self.ring.heartbeat();
            let left = Duration::from_nanos(due.saturating_sub(monotonic_ns()));
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
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
                let sample = self.resolve(e.pid, e.tid, time, &e.stack);
                let done = monotonic_ns();
                self.stats.notice_ns += noticed.saturating_sub(e.time_ns);
                self.stats.read_ns += done.saturating_sub(noticed);
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

    /// The followed process `pid`, located (and its walk recipe published)
    /// on first sight, retried every [`RETRY_ATTACH`] while not readable.
    fn follow(&mut self, pid: i32) -> Option<&mut Followed> {
        if pid <= 0 {
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
                    if let Some(recipe) = walk_recipe(t.interpreter(), self.max_depth) {
                        self.ring.add_recipe(&recipe);
                    }
                    Process::Ready(Followed {
                        target: Box::new(t),
                        requests: HashMap::new(),
                        requests_read_at: None,
                    })
                }
                Err(_) => Process::NotReadable {
                    last_try: Instant::now(),
                },
            };
            self.processes.insert(pid, p);
        }
        match self.processes.get_mut(&pid) {
            Some(Process::Ready(f)) => Some(f),
            _ => None,
        }
    }

    /// The sample of an allocation from the stack the hook captured.
    fn resolve(
        &mut self,
        pid: i32,
        tid: i32,
        time: Duration,
        stack: &CapturedStack,
    ) -> Option<Sample> {
        let (captured, truncated) = match stack {
            CapturedStack::Walked { frames, truncated } => (frames, *truncated),
            CapturedStack::BadPointer { frames } if !frames.is_empty() => (frames, true),
            CapturedStack::NoThreadState => {
                self.stats.native += 1;
                return Some(native_sample(time, pid, tid, "(native thread)"));
            }
            CapturedStack::NotPython => return None,
            _ => {
                // No recipe yet: locating the process publishes the one
                // its later events are walked with.
                self.follow(pid);
                return None;
            }
        };
        if captured.is_empty() {
            self.stats.native += 1;
            return Some(native_sample(time, pid, tid, "(no Python code running)"));
        }
        let frames = captured.iter().map(|f: &CapturedFrame| (f.code, f.offset));
        let resolved = self.follow(pid).and_then(|followed| {
            let frames = followed
                .target
                .resolve_captured(frames)
                .ok()
                .filter(|f| !f.is_empty())?;
            Some((frames, followed.request_of(tid, time)))
        });
        let Some((frames, request)) = resolved else {
            self.stats.unresolved += 1;
            return None;
        };
        self.stats.attributed += 1;
        Some(Sample {
            time,
            pid,
            thread_id: 0,
            native_id: Some(tid),
            thread_name: None,
            state: ThreadState::Python,
            holds_gil: false,
            frames,
            truncated,
            walked: true,
            request,
            category: None,
        })
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

impl Followed {
    /// The request thread `tid` serves, read from outside at most every
    /// [`REQUEST_READ_EVERY`].
    fn request_of(&mut self, tid: i32, time: Duration) -> Option<SampledRequest> {
        let stale = self
            .requests_read_at
            .is_none_or(|t| t.elapsed() >= REQUEST_READ_EVERY);
        if stale {
            self.requests_read_at = Some(Instant::now());
            self.requests.clear();
            if let Ok(samples) = self.target.sample(time) {
                for s in samples {
                    if let (Some(t), Some(r)) = (s.native_id, s.request) {
                        self.requests.insert(t, r);
                    }
                }
            }
        }
        self.requests.get(&tid).cloned()
    }
}

/// An allocation of a thread running no Python code: one pseudo-frame.
fn native_sample(time: Duration, pid: i32, tid: i32, what: &str) -> Sample {
    Sample {
        time,
        pid,
        thread_id: 0,
        native_id: Some(tid),
        thread_name: None,
        state: ThreadState::Native,
        holds_gil: false,
        frames: vec![SampledFrame {
            name: Arc::from(what),
            filename: Arc::from("<native>"),
            line: 0,
            first_line: 0,
            code_key: 0,
        }],
        truncated: false,
        walked: true,
        request: None,
        category: None,
    }
}

/// How the hook walks frames of `interp`: from its layout's frame model.
/// Only for layouts that are the static tables checked against CPython's
/// headers (a wrong offset would make the hook follow a wild pointer inside
/// the target); other interpreters get no recipe, their samples no stack.
pub fn walk_recipe(interp: &Interpreter, max_depth: usize) -> Option<WalkRecipe> {
    recipe_for_layout(interp.version, &interp.layout, interp.runtime, max_depth)
}

fn recipe_for_layout(
    version: Version,
    l: &Layout,
    runtime: u64,
    max_depth: usize,
) -> Option<WalkRecipe> {
    let checked = known_layout(version).is_some_and(|k| {
        k.frame_root == l.frame_root
            && k.frame == l.frame
            && k.code_code_adaptive == l.code_code_adaptive
            && !l.free_threaded
    });
    if !checked || l.tstate_base_frame.is_some() {
        return None;
    }
    let root = match l.frame_root {
        FrameRoot::FrameObject { frame } => RecipeRoot::AtThreadState { offset: frame },
        FrameRoot::CFrame {
            cframe,
            current_frame,
        } => RecipeRoot::ViaPointer {
            offset: cframe,
            then: current_frame,
        },
        FrameRoot::Direct { current_frame } => RecipeRoot::AtThreadState {
            offset: current_frame,
        },
    };
    let frames = match l.frame {
        FrameModel::FrameObject {
            back,
            code,
            lasti,
            lasti_unit,
            ..
        } => RecipeFrames::FrameObject {
            back,
            code,
            lasti,
            lasti_unit,
        },
        FrameModel::Interpreter {
            previous,
            executable,
            instr_ptr,
            owner,
            skip_owners,
            executable_tag_mask,
            ..
        } => RecipeFrames::Interpreter {
            previous,
            code: executable,
            instr_ptr,
            code_start: l.code_code_adaptive?,
            owner,
            skip_owners: skip_owners.iter().copied().take(8).collect(),
            code_tag_mask: executable_tag_mask,
        },
    };
    Some(WalkRecipe {
        runtime,
        root,
        frames,
        max_depth: u32::try_from(max_depth).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_come_from_the_checked_tables_only() {
        for minor in 8..=13 {
            let version = Version::new(3, minor, 0);
            let layout = known_layout(version).expect("a table");
            let r = recipe_for_layout(version, &layout, 0x1000, 500).expect("a recipe");
            assert_eq!(r.runtime, 0x1000);
            assert_eq!(r.max_depth, 500, "clamped by the ring, not here");
            match (layout.frame, &r.frames) {
                (FrameModel::FrameObject { .. }, RecipeFrames::FrameObject { .. }) => {}
                (
                    FrameModel::Interpreter { skip_owners, .. },
                    RecipeFrames::Interpreter {
                        code_start,
                        skip_owners: s,
                        ..
                    },
                ) => {
                    assert_eq!(Some(*code_start), layout.code_code_adaptive);
                    assert_eq!(&s[..], skip_owners);
                }
                other => panic!("3.{minor}: {other:?}"),
            }
            // An offset that is not the table's (a layout read from
            // elsewhere): no walk in the target.
            let mut odd = layout.clone();
            odd.frame_root = match odd.frame_root {
                FrameRoot::FrameObject { frame } => FrameRoot::FrameObject { frame: frame + 8 },
                FrameRoot::CFrame {
                    cframe,
                    current_frame,
                } => FrameRoot::CFrame {
                    cframe: cframe + 8,
                    current_frame,
                },
                FrameRoot::Direct { current_frame } => FrameRoot::Direct {
                    current_frame: current_frame + 8,
                },
            };
            assert!(recipe_for_layout(version, &odd, 0x1000, 128).is_none());
            let mut free_threaded = layout.clone();
            free_threaded.free_threaded = true;
            assert!(recipe_for_layout(version, &free_threaded, 0x1000, 128).is_none());
        }
        // No table for 3.14: no recipe, whatever the layout says.
        let layout = known_layout(Version::new(3, 13, 0)).expect("3.13");
        assert!(recipe_for_layout(Version::new(3, 14, 0), &layout, 0x1000, 128).is_none());
    }
}
