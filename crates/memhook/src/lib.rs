//! The allocation hook of `pyrometer record --memory`.
//!
//! [`LIBRARY`] is a small C library (src/memhook.c, built by build.rs)
//! preloaded into the launched command with `LD_PRELOAD`. It samples
//! allocations by bytes and reports them through a [`SharedRing`]: a
//! shared-memory file pyrometer creates and names in `PYROMETER_MEMHOOK`.
//! Each sampled allocation carries the allocating thread's Python stack,
//! walked inside the target by the hook ([`CapturedStack`]: code-object
//! addresses and instruction offsets) following the [`WalkRecipe`]
//! pyrometer wrote for that interpreter; nothing in the target waits.
//! Fork children share the ring (events carry their pid); exec'd programs
//! inherit the environment and map it again.
//!
//! Everything in the ring is written by the target: untrusted, validated by
//! the reader.
#![deny(missing_docs)]

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The preloaded library, embedded so one pyrometer binary is enough.
pub const LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libpyrometer_memhook.so"));

/// Environment variable naming the shared-memory file.
pub const ENV_RING: &str = "PYROMETER_MEMHOOK";
/// Default mean bytes between samples (512 KiB).
pub const DEFAULT_MEAN_BYTES: u64 = 512 * 1024;

const MAGIC: u64 = 0x4b4f_4f48_4d52_5950; // "PYRMHOOK"
const VERSION: u32 = 2;
const RING_SLOTS: u64 = 4096;
/// Most frames the hook copies per sampled allocation.
pub const MAX_FRAMES: usize = 128;
/// Interpreters (distinct `_PyRuntime` addresses: exec'd processes) with a recipe.
const RECIPES: usize = 1024;
const LIVE_SLOTS: usize = 65536;
/// A reserved slot not published within this long belongs to a producer
/// that died mid-publish: skip it.
const STUCK_SLOT: Duration = Duration::from_millis(50);

const EVENT_ALLOC: u32 = 1;
const EVENT_FREE: u32 = 2;

const STACK_WALKED: u32 = 1;
const STACK_NO_TSTATE: u32 = 2;
const STACK_NOT_PYTHON: u32 = 3;
const STACK_BAD_POINTER: u32 = 4;

#[repr(C)]
struct RecipeSlot {
    ready: AtomicU64,
    runtime: AtomicU64,
    root_kind: AtomicU32,
    frame_kind: AtomicU32,
    root_offset: AtomicU64,
    root_offset2: AtomicU64,
    frame_back: AtomicU64,
    frame_code: AtomicU64,
    frame_position: AtomicU64,
    lasti_unit: AtomicU64,
    code_start: AtomicU64,
    code_tag_mask: AtomicU64,
    owner_offset: AtomicU64,
    skip_owners: AtomicU64,
    skip_owner_count: AtomicU32,
    max_depth: AtomicU32,
    _pad: [u64; 2],
}

#[repr(C)]
struct FrameSlot {
    code: AtomicU64,
    offset: AtomicI64,
}

#[repr(C)]
struct Slot {
    seq: AtomicU64,
    nframes: AtomicU32,
    kind: AtomicU32,
    pid: AtomicI32,
    tid: AtomicI32,
    addr: AtomicU64,
    size: AtomicU64,
    time_ns: AtomicU64,
    stack: AtomicU32,
    truncated: AtomicU32,
    _pad: u64,
}

#[repr(C)]
struct Live {
    addr: AtomicU64,
    pid: AtomicI64,
}

#[repr(C)]
struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    _pad_flags: u32,
    mean_bytes: AtomicU64,
    heartbeat_ns: AtomicU64,
    write_seq: AtomicU64,
    read_seq: AtomicU64,
    doorbell: AtomicU32,
    reader_waiting: AtomicU32,
    dropped_full: AtomicU64,
    no_recipe: AtomicU64,
    untracked_blocks: AtomicU64,
    hooked_processes: AtomicU64,
    native_threads: AtomicU64,
    _pad1: [u64; 4],
    recipes: [RecipeSlot; RECIPES],
    ring: [Slot; RING_SLOTS as usize],
    frames: [[FrameSlot; MAX_FRAMES]; RING_SLOTS as usize],
    live: [Live; LIVE_SLOTS],
}

// Mirrors the _Static_asserts of memhook.c.
const _: () = assert!(std::mem::size_of::<RecipeSlot>() == 128);
const _: () = assert!(std::mem::size_of::<Slot>() == 64);
const _: () = assert!(
    std::mem::size_of::<Header>()
        == 128 + RECIPES * 128 + 4096 * 64 + 4096 * MAX_FRAMES * 16 + 65536 * 16
);

/// How a thread state leads to its innermost frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipeRoot {
    /// The frame pointer is at `tstate + offset` (3.8–3.10 `frame`, 3.13+ `current_frame`).
    AtThreadState {
        /// Offset in the thread state.
        offset: u64,
    },
    /// A pointer at `tstate + offset`, the frame pointer at `that + then` (3.11/3.12 `cframe->current_frame`).
    ViaPointer {
        /// Offset of the pointer in the thread state.
        offset: u64,
        /// Offset of the frame pointer in what it points at.
        then: u64,
    },
}

/// The frame model, for the hook's walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipeFrames {
    /// `PyFrameObject`s (≤3.10): an `int` `f_lasti`.
    FrameObject {
        /// `f_back`
        back: u64,
        /// `f_code`
        code: u64,
        /// `f_lasti`
        lasti: u64,
        /// Bytes per `f_lasti` unit.
        lasti_unit: u64,
    },
    /// `_PyInterpreterFrame`s (3.11+): an instruction pointer into the code object.
    Interpreter {
        /// `previous`
        previous: u64,
        /// `f_code` / `f_executable`
        code: u64,
        /// `prev_instr` / `instr_ptr`
        instr_ptr: u64,
        /// `offsetof(PyCodeObject, co_code_adaptive)`: where the bytecode starts.
        code_start: u64,
        /// `owner`
        owner: u64,
        /// Owner values of frames that are not Python code (at most 8).
        skip_owners: Vec<u8>,
        /// Tag bits of `f_executable`.
        code_tag_mask: u64,
    },
}

/// How the hook walks the frames of one interpreter, keyed by the address
/// of its `_PyRuntime` (the same in fork children).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkRecipe {
    /// Address of `_PyRuntime` in the processes it is for.
    pub runtime: u64,
    /// Thread state → innermost frame.
    pub root: RecipeRoot,
    /// Frame → code, position, caller.
    pub frames: RecipeFrames,
    /// Most frames to copy (at most [`MAX_FRAMES`]).
    pub max_depth: u32,
}

/// Why the ring or the library could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MemhookError {
    /// Creating or mapping the shared-memory file failed.
    #[error("cannot create the shared memory for --memory at {path}: {source}")]
    Shared {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing the preloaded library failed.
    #[error("cannot write the allocation hook library to {path}: {source} (set XDG_CACHE_HOME to a writable directory)")]
    Install {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a sampled event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A sampled allocation.
    Alloc,
    /// A sampled block was freed.
    Free,
}

/// One frame the hook copied: a code object and the byte offset of the
/// instruction it was at (`None`: not started yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapturedFrame {
    /// Code object address (untrusted: validate before use).
    pub code: u64,
    /// Byte offset in the bytecode.
    pub offset: Option<u64>,
}

/// The allocating thread's stack, as the hook walked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapturedStack {
    /// The hook had no recipe for this interpreter yet (pyrometer had not
    /// located it).
    NoRecipe,
    /// Innermost frame first; empty when the thread ran no Python code.
    Walked {
        /// The frames.
        frames: Vec<CapturedFrame>,
        /// More frames than the depth bound.
        truncated: bool,
    },
    /// A thread without a Python thread state (a native thread).
    NoThreadState,
    /// The process has no Python interpreter.
    NotPython,
    /// The walk met an implausible pointer (frames so far are kept).
    BadPointer {
        /// The frames before it.
        frames: Vec<CapturedFrame>,
    },
}

/// One event read from the ring.
#[derive(Debug, Clone)]
pub struct Event {
    /// Position in the ring.
    pub index: u64,
    /// Allocation or free.
    pub kind: EventKind,
    /// Process (host pid namespace of the target).
    pub pid: i32,
    /// OS thread id of the allocating thread.
    pub tid: i32,
    /// Block address.
    pub addr: u64,
    /// Requested bytes (allocations).
    pub size: u64,
    /// CLOCK_MONOTONIC of the event, in ns.
    pub time_ns: u64,
    /// The allocating thread's stack (allocations).
    pub stack: CapturedStack,
}

/// Counters kept by the hooks.
#[derive(Debug, Clone, Copy, Default)]
pub struct HookStats {
    /// Events lost because pyrometer was a full ring behind.
    pub dropped_full: u64,
    /// Sampled allocations before pyrometer wrote their interpreter's walk
    /// recipe (no stack).
    pub no_recipe: u64,
    /// Sampled allocations of threads without a Python thread state.
    pub native_threads: u64,
    /// Sampled blocks the free-tracking table had no room for.
    pub untracked_blocks: u64,
    /// Processes that mapped the ring (the launched one, forks, execs).
    pub hooked_processes: u64,
    /// Reserved slots skipped because their producer never published.
    pub skipped_slots: u64,
    /// Walk recipes written.
    pub recipes: u64,
}

/// Monotonic clock in ns, as the hook reads it.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Ring files are named `pyrometer-memhook-PID-NANOS` (PID: pyrometer's).
const RING_PREFIX: &str = "pyrometer-memhook-";

/// Remove ring files left by pyrometers that were killed (their PID is
/// gone), bounded to the first 10000 entries of the directory.
fn remove_stale_rings(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.take(10_000).flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(RING_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        let mine = entry
            .metadata()
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid);
        if mine && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The shared-memory ring between the hooks in the target and pyrometer.
/// The file is removed on drop: processes started later run unhooked.
pub struct SharedRing {
    path: PathBuf,
    header: *mut Header,
    read: u64,
    stuck_since: Option<Instant>,
    skipped: u64,
    recipes: u64,
}

// SAFETY: the mapping is only accessed through atomics.
unsafe impl Send for SharedRing {}

impl std::fmt::Debug for SharedRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRing")
            .field("path", &self.path)
            .finish()
    }
}

impl SharedRing {
    /// Create the ring: one sample per `mean_bytes` on average.
    pub fn create(mean_bytes: u64) -> Result<SharedRing, MemhookError> {
        let dir = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        remove_stale_rings(&dir);
        let path = dir.join(format!(
            "{RING_PREFIX}{}-{}",
            std::process::id(),
            monotonic_ns()
        ));
        let err = |source| MemhookError::Shared {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        let size = std::mem::size_of::<Header>();
        file.set_len(size as u64).map_err(|e| {
            let _ = std::fs::remove_file(&path);
            err(e)
        })?;
        // SAFETY: mapping a file of `size` bytes we just created.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            let _ = std::fs::remove_file(&path);
            return Err(err(e));
        }
        let ring = SharedRing {
            path,
            header: map.cast(),
            read: 0,
            stuck_since: None,
            skipped: 0,
            recipes: 0,
        };
        let h = ring.header();
        h.mean_bytes.store(mean_bytes.max(1), Ordering::Relaxed);
        h.version.store(VERSION, Ordering::Relaxed);
        h.heartbeat_ns.store(monotonic_ns(), Ordering::Relaxed);
        // The magic last: a hook mapping it early sees an invalid ring.
        h.magic.store(MAGIC, Ordering::Release);
        Ok(ring)
    }

    fn header(&self) -> &Header {
        // SAFETY: mapped for our lifetime; all fields are atomics or padding.
        unsafe { &*self.header }
    }

    /// The shared-memory file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tell the hooks pyrometer is alive; stale for a second, they stop
    /// sampling.
    pub fn heartbeat(&self) {
        self.header()
            .heartbeat_ns
            .store(monotonic_ns(), Ordering::Release);
    }

    /// The next published event, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        // SAFETY: mapped for our lifetime (not tied to the borrow of self).
        let h: &Header = unsafe { &*self.header };
        loop {
            let written = h.write_seq.load(Ordering::Acquire);
            if written <= self.read {
                self.stuck_since = None;
                return None;
            }
            let slot = &h.ring[(self.read % RING_SLOTS) as usize];
            if slot.seq.load(Ordering::Acquire) != self.read.wrapping_add(1) {
                // Reserved, not yet published: wait a little, then skip.
                let since = *self.stuck_since.get_or_insert_with(Instant::now);
                if since.elapsed() < STUCK_SLOT {
                    return None;
                }
                self.stuck_since = None;
                self.skipped += 1;
                self.read += 1;
                h.read_seq.store(self.read, Ordering::Release);
                continue;
            }
            self.stuck_since = None;
            let kind = match slot.kind.load(Ordering::Relaxed) {
                EVENT_ALLOC => Some(EventKind::Alloc),
                EVENT_FREE => Some(EventKind::Free),
                _ => None,
            };
            let at = (self.read % RING_SLOTS) as usize;
            let event = kind.map(|kind| Event {
                index: self.read,
                kind,
                pid: slot.pid.load(Ordering::Relaxed),
                tid: slot.tid.load(Ordering::Relaxed),
                addr: slot.addr.load(Ordering::Relaxed),
                size: slot.size.load(Ordering::Relaxed),
                time_ns: slot.time_ns.load(Ordering::Relaxed),
                stack: match kind {
                    EventKind::Free => CapturedStack::Walked {
                        frames: Vec::new(),
                        truncated: false,
                    },
                    EventKind::Alloc => read_stack(slot, h.frames.get(at)),
                },
            });
            self.read += 1;
            h.read_seq.store(self.read, Ordering::Release);
            if let Some(e) = event {
                return Some(e);
            }
        }
    }

    /// Wait up to `timeout`, or until the hooks have filled a quarter of
    /// the ring (they do not wake pyrometer for every event: a system call
    /// per sample would cost the target).
    pub fn wait(&self, timeout: Duration) {
        let h = self.header();
        let bell = h.doorbell.load(Ordering::Acquire);
        h.reader_waiting.store(1, Ordering::SeqCst);
        if h.write_seq.load(Ordering::SeqCst) < self.read.saturating_add(RING_SLOTS / 4) {
            futex_wait(&h.doorbell, bell, timeout);
        }
        h.reader_waiting.store(0, Ordering::Release);
    }

    /// Publish how to walk the frames of the interpreter at `recipe.runtime`
    /// (once per interpreter; later calls for it are no-ops). False when
    /// the table is full.
    pub fn add_recipe(&mut self, recipe: &WalkRecipe) -> bool {
        // SAFETY: mapped for our lifetime (not tied to the borrow of self).
        let h: &Header = unsafe { &*self.header };
        if h.recipes.iter().any(|r| {
            r.ready.load(Ordering::Acquire) == 1
                && r.runtime.load(Ordering::Relaxed) == recipe.runtime
        }) {
            return true;
        }
        // pyrometer is the only writer: a free entry stays free meanwhile.
        let Some(r) = h
            .recipes
            .iter()
            .find(|r| r.ready.load(Ordering::Acquire) == 0)
        else {
            return false;
        };
        r.runtime.store(recipe.runtime, Ordering::Relaxed);
        r.max_depth.store(
            recipe.max_depth.clamp(1, MAX_FRAMES as u32),
            Ordering::Relaxed,
        );
        match recipe.root {
            RecipeRoot::AtThreadState { offset } => {
                r.root_kind.store(1, Ordering::Relaxed);
                r.root_offset.store(offset, Ordering::Relaxed);
            }
            RecipeRoot::ViaPointer { offset, then } => {
                r.root_kind.store(2, Ordering::Relaxed);
                r.root_offset.store(offset, Ordering::Relaxed);
                r.root_offset2.store(then, Ordering::Relaxed);
            }
        }
        match &recipe.frames {
            RecipeFrames::FrameObject {
                back,
                code,
                lasti,
                lasti_unit,
            } => {
                r.frame_kind.store(1, Ordering::Relaxed);
                r.frame_back.store(*back, Ordering::Relaxed);
                r.frame_code.store(*code, Ordering::Relaxed);
                r.frame_position.store(*lasti, Ordering::Relaxed);
                r.lasti_unit.store(*lasti_unit, Ordering::Relaxed);
            }
            RecipeFrames::Interpreter {
                previous,
                code,
                instr_ptr,
                code_start,
                owner,
                skip_owners,
                code_tag_mask,
            } => {
                r.frame_kind.store(2, Ordering::Relaxed);
                r.frame_back.store(*previous, Ordering::Relaxed);
                r.frame_code.store(*code, Ordering::Relaxed);
                r.frame_position.store(*instr_ptr, Ordering::Relaxed);
                r.code_start.store(*code_start, Ordering::Relaxed);
                r.owner_offset.store(*owner, Ordering::Relaxed);
                r.code_tag_mask.store(*code_tag_mask, Ordering::Relaxed);
                let mut bytes = [0u8; 8];
                let n = skip_owners.len().min(8);
                bytes[..n].copy_from_slice(&skip_owners[..n]);
                r.skip_owners
                    .store(u64::from_le_bytes(bytes), Ordering::Relaxed);
                r.skip_owner_count.store(n as u32, Ordering::Relaxed);
            }
        }
        // Ready last: the hooks read the other fields only after it.
        r.ready.store(1, Ordering::Release);
        self.recipes += 1;
        true
    }

    /// Forget the sampled blocks of a process that exited, so the table
    /// does not fill with them.
    pub fn forget_process(&self, pid: i32) {
        for e in self.header().live.iter() {
            let addr = e.addr.load(Ordering::Acquire);
            if addr > 2 && e.pid.load(Ordering::Relaxed) == pid as i64 {
                let _ = e
                    .addr
                    .compare_exchange(addr, 1, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// The hooks' counters.
    pub fn stats(&self) -> HookStats {
        let h = self.header();
        HookStats {
            dropped_full: h.dropped_full.load(Ordering::Relaxed),
            no_recipe: h.no_recipe.load(Ordering::Relaxed),
            native_threads: h.native_threads.load(Ordering::Relaxed),
            recipes: self.recipes,
            untracked_blocks: h.untracked_blocks.load(Ordering::Relaxed),
            hooked_processes: h.hooked_processes.load(Ordering::Relaxed),
            skipped_slots: self.skipped,
        }
    }
}

impl Drop for SharedRing {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        // SAFETY: unmapping our own mapping of this size.
        unsafe { libc::munmap(self.header.cast(), std::mem::size_of::<Header>()) };
    }
}

/// The stack the hook wrote into a slot (untrusted: counts are bounded).
fn read_stack(slot: &Slot, frames: Option<&[FrameSlot; MAX_FRAMES]>) -> CapturedStack {
    let copy = || -> Vec<CapturedFrame> {
        let n = (slot.nframes.load(Ordering::Relaxed) as usize).min(MAX_FRAMES);
        frames
            .map(|f| {
                f[..n]
                    .iter()
                    .map(|f| CapturedFrame {
                        code: f.code.load(Ordering::Relaxed),
                        offset: u64::try_from(f.offset.load(Ordering::Relaxed)).ok(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    match slot.stack.load(Ordering::Relaxed) {
        STACK_WALKED => CapturedStack::Walked {
            frames: copy(),
            truncated: slot.truncated.load(Ordering::Relaxed) != 0,
        },
        STACK_NO_TSTATE => CapturedStack::NoThreadState,
        STACK_NOT_PYTHON => CapturedStack::NotPython,
        STACK_BAD_POINTER => CapturedStack::BadPointer { frames: copy() },
        // STACK_NO_RECIPE, or a value this version does not know.
        _ => CapturedStack::NoRecipe,
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: futex on a word of a shared mapping we hold; bounded timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0,
        )
    };
}

/// Write [`LIBRARY`] where the launched command can load it: the user's
/// cache directory (private, content-named, verified), else a private
/// temporary directory.
pub fn install_library() -> Result<PathBuf, MemhookError> {
    let hash = LIBRARY.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let name = format!("libpyrometer_memhook-{hash:016x}.so");
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("pyrometer"));
    let mut last = None;
    let private_tmp = std::env::temp_dir().join(format!(
        "pyrometer-memhook-{}-{}",
        std::process::id(),
        monotonic_ns()
    ));
    for dir in cache.into_iter().chain([private_tmp]) {
        let path = dir.join(&name);
        if std::fs::read(&path).is_ok_and(|b| b == LIBRARY) {
            return Ok(path);
        }
        match write_library(&dir, &path) {
            Ok(()) => return Ok(path),
            Err(source) => last = Some(MemhookError::Install { path, source }),
        }
    }
    Err(last.unwrap_or_else(|| MemhookError::Install {
        path: PathBuf::from(name),
        source: std::io::Error::other("no directory to write to"),
    }))
}

fn write_library(dir: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(
        ".memhook-{}-{}.tmp",
        std::process::id(),
        monotonic_ns()
    ));
    let mut f: File = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&tmp)?;
    f.write_all(LIBRARY)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Estimated bytes one sampled allocation of `size` bytes stands for, with
/// one sample per `mean_bytes` on average: size / P(sampled).
pub fn sample_weight(size: u64, mean_bytes: u64) -> f64 {
    let size = size as f64;
    let mean = mean_bytes.max(1) as f64;
    let p = 1.0 - (-size / mean).exp();
    if p <= 0.0 {
        mean
    } else {
        size / p
    }
}
