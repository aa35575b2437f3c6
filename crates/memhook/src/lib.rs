//! The allocation hook of `pyrometer record --memory`.
//!
//! [`LIBRARY`] is a small C library (src/memhook.c, built by build.rs)
//! preloaded into the launched command with `LD_PRELOAD`. It samples
//! allocations by bytes and reports them through a [`SharedRing`]: a
//! shared-memory file pyrometer creates and names in `PYROMETER_MEMHOOK`.
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
const VERSION: u32 = 1;
const RING_SLOTS: u64 = 4096;
const LIVE_SLOTS: usize = 65536;
/// A reserved slot not published within this long belongs to a producer
/// that died mid-publish: skip it.
const STUCK_SLOT: Duration = Duration::from_millis(50);

const EVENT_ALLOC: u32 = 1;
const EVENT_FREE: u32 = 2;

#[repr(C)]
struct Slot {
    seq: AtomicU64,
    ack: AtomicU32,
    kind: AtomicU32,
    pid: AtomicI32,
    tid: AtomicI32,
    addr: AtomicU64,
    size: AtomicU64,
    time_ns: AtomicU64,
    _pad: [u64; 2],
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
    handshake: AtomicU32,
    mean_bytes: AtomicU64,
    heartbeat_ns: AtomicU64,
    write_seq: AtomicU64,
    read_seq: AtomicU64,
    doorbell: AtomicU32,
    _pad0: u32,
    dropped_full: AtomicU64,
    missed_handshakes: AtomicU64,
    untracked_blocks: AtomicU64,
    hooked_processes: AtomicU64,
    _pad1: [u64; 6],
    ring: [Slot; RING_SLOTS as usize],
    live: [Live; LIVE_SLOTS],
}

// Mirrors the _Static_asserts of memhook.c.
const _: () = assert!(std::mem::size_of::<Slot>() == 64);
const _: () = assert!(std::mem::size_of::<Header>() == 1_310_856);

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
    /// A sampled allocation; its thread may be waiting for [`SharedRing::ack`].
    Alloc,
    /// A sampled block was freed.
    Free,
}

/// One event read from the ring.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// Position in the ring, for [`SharedRing::ack`].
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
}

/// Counters kept by the hooks.
#[derive(Debug, Clone, Copy, Default)]
pub struct HookStats {
    /// Events lost because pyrometer was a full ring behind.
    pub dropped_full: u64,
    /// Allocations whose thread stopped waiting before pyrometer read it.
    pub missed_handshakes: u64,
    /// Sampled blocks the free-tracking table had no room for.
    pub untracked_blocks: u64,
    /// Processes that mapped the ring (the launched one, forks, execs).
    pub hooked_processes: u64,
    /// Reserved slots skipped because their producer never published.
    pub skipped_slots: u64,
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
    /// Create the ring: one sample per `mean_bytes` on average; with
    /// `handshake`, allocating threads wait (bounded) for [`Self::ack`].
    pub fn create(mean_bytes: u64, handshake: bool) -> Result<SharedRing, MemhookError> {
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
        };
        let h = ring.header();
        h.mean_bytes.store(mean_bytes.max(1), Ordering::Relaxed);
        h.handshake.store(handshake as u32, Ordering::Relaxed);
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
            let event = kind.map(|kind| Event {
                index: self.read,
                kind,
                pid: slot.pid.load(Ordering::Relaxed),
                tid: slot.tid.load(Ordering::Relaxed),
                addr: slot.addr.load(Ordering::Relaxed),
                size: slot.size.load(Ordering::Relaxed),
                time_ns: slot.time_ns.load(Ordering::Relaxed),
            });
            self.read += 1;
            h.read_seq.store(self.read, Ordering::Release);
            if let Some(e) = event {
                return Some(e);
            }
        }
    }

    /// Release the thread that published allocation `index`.
    pub fn ack(&self, index: u64) {
        let slot = &self.header().ring[(index % RING_SLOTS) as usize];
        slot.ack
            .store((index as u32).wrapping_add(1), Ordering::Release);
        futex_wake(&slot.ack);
    }

    /// Wait up to `timeout` for the hooks to publish something.
    pub fn wait(&self, timeout: Duration) {
        let h = self.header();
        let bell = h.doorbell.load(Ordering::Acquire);
        if h.write_seq.load(Ordering::Acquire) > self.read {
            return;
        }
        futex_wait(&h.doorbell, bell, timeout);
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
            missed_handshakes: h.missed_handshakes.load(Ordering::Relaxed),
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

fn futex_wake(word: &AtomicU32) {
    // SAFETY: futex on a word of a shared mapping we hold.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0,
        )
    };
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
