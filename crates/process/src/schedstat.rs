//! Whether a thread has been on a CPU since an earlier reading.
//!
//! `/proc/PID/task/TID/schedstat` holds the thread's on-CPU time, its
//! run-queue wait and how many times it was switched onto a CPU. A thread
//! that was not on a CPU at the earlier reading and whose switch count and
//! on-CPU time have not moved since has not run in between, so nothing it
//! owns (its stack) can have changed. The file cannot say a thread is
//! running: the on-CPU time of a running thread is only brought up to date
//! at scheduler ticks. Use [`crate::ThreadStatReader`] for that.
//!
//! Kernels without `CONFIG_SCHED_INFO` print `0 0 0`; every reading is then
//! `None`, as for a thread that is gone.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Most files one reader keeps open: beyond, threads read `None` (they are
/// then read in full on every tick) rather than use up descriptors.
const MAX_OPEN: usize = 512;

/// One reading of a thread's `schedstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedStat {
    /// Time spent on a CPU, in ns (updated at scheduler ticks and switches).
    pub on_cpu_ns: u64,
    /// Time spent runnable on a run queue, in ns.
    pub run_delay_ns: u64,
    /// Times the thread was switched onto a CPU.
    pub switches_in: u64,
}

impl SchedStat {
    /// Whether the thread can have been on a CPU between `earlier` and this
    /// reading, given that it was not on a CPU at `earlier`.
    pub fn ran_since(&self, earlier: &SchedStat) -> bool {
        self.switches_in != earlier.switches_in || self.on_cpu_ns != earlier.on_cpu_ns
    }
}

/// Parse `schedstat`'s three numbers; `None` if malformed or all zero (the
/// kernel does not keep them).
pub fn parse_schedstat(text: &[u8]) -> Option<SchedStat> {
    let mut fields = text.trim_ascii().split(|b| *b == b' ');
    let mut next = || -> Option<u64> {
        let field = fields.next()?;
        if field.is_empty() || field.len() > 20 {
            return None;
        }
        field.iter().try_fold(0u64, |n, b| {
            let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
            n.checked_mul(10)?.checked_add(u64::from(digit))
        })
    };
    let stat = SchedStat {
        on_cpu_ns: next()?,
        run_delay_ns: next()?,
        switches_in: next()?,
    };
    // A thread that exists has been switched onto a CPU at least once.
    (stat.switches_in > 0).then_some(stat)
}

/// Reads threads' `schedstat` cheaply: files are kept open and re-read with
/// `pread` into a fixed buffer.
#[derive(Debug)]
pub struct SchedstatReader {
    files: HashMap<i32, File>,
    available: bool,
}

impl Default for SchedstatReader {
    fn default() -> Self {
        Self::new()
    }
}

impl SchedstatReader {
    /// A reader, after checking that this kernel keeps the numbers (our own
    /// thread has run, so its switch count is not zero).
    pub fn new() -> Self {
        let available = std::fs::read("/proc/thread-self/schedstat")
            .ok()
            .and_then(|text| parse_schedstat(&text))
            .is_some();
        Self {
            files: HashMap::new(),
            available,
        }
    }

    /// Whether the kernel exposes per-thread schedstat.
    pub fn available(&self) -> bool {
        self.available
    }

    /// Thread `tid` of process `pid` now; `None` when it is gone or cannot
    /// be read (and always when the kernel does not keep the numbers).
    pub fn read(&mut self, pid: i32, tid: i32) -> Option<SchedStat> {
        if !self.available {
            return None;
        }
        let full = self.files.len() >= MAX_OPEN;
        let file = match self.files.entry(tid) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(_) if full => return None,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(File::open(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?)
            }
        };
        let mut buf = [0u8; 96];
        let read = file.read_at(&mut buf, 0);
        match read {
            Ok(n) if n > 0 => parse_schedstat(buf.get(..n)?),
            _ => {
                // Gone (ESRCH): reopened next time, the id may be reused.
                self.files.remove(&tid);
                None
            }
        }
    }

    /// Forget threads that are not in `alive`.
    pub fn retain(&mut self, alive: &[i32]) {
        self.files.retain(|tid, _| alive.contains(tid));
    }

    /// Threads whose file is open.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no thread's file is open.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// The number of threads of a process from the link count of its kept-open
/// `/proc/PID/task` (two plus one per thread): an `fstat`, no directory
/// listing.
#[derive(Debug)]
pub struct ThreadCounter {
    dir: File,
}

impl ThreadCounter {
    /// Open `/proc/PID/task`.
    pub fn open(pid: i32) -> std::io::Result<Self> {
        Ok(Self {
            dir: File::open(format!("/proc/{pid}/task"))?,
        })
    }

    /// The process's thread count now; `None` when it cannot be told.
    pub fn count(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let links = self.dir.metadata().ok()?.nlink();
        links.checked_sub(2).filter(|n| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    use crate::process::gettid;
    use crate::testutil::eventually;

    #[test]
    fn parses_the_three_numbers_and_refuses_the_rest() {
        assert_eq!(
            parse_schedstat(b"29443313 230345 24\n"),
            Some(SchedStat {
                on_cpu_ns: 29443313,
                run_delay_ns: 230345,
                switches_in: 24
            })
        );
        // A kernel without CONFIG_SCHED_INFO.
        assert_eq!(parse_schedstat(b"0 0 0\n"), None);
        assert_eq!(parse_schedstat(b""), None);
        assert_eq!(parse_schedstat(b"1 2\n"), None);
        assert_eq!(parse_schedstat(b"1 x 3\n"), None);
        assert_eq!(parse_schedstat(b"1  2 3\n"), None);
        assert_eq!(parse_schedstat(b"99999999999999999999 1 1\n"), None);
    }

    #[test]
    fn a_sleeping_thread_does_not_move_and_a_busy_one_does() {
        let pid = std::process::id() as i32;
        let mut reader = SchedstatReader::new();
        assert!(
            reader.available(),
            "this kernel does not expose /proc/PID/task/TID/schedstat (CONFIG_SCHED_INFO)"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (busy_tid, sleeper_tid) = (Arc::new(AtomicI32::new(0)), Arc::new(AtomicI32::new(0)));
        let wake = Arc::new(Barrier::new(2));
        let busy = {
            let (stop, tid) = (stop.clone(), busy_tid.clone());
            std::thread::spawn(move || {
                tid.store(gettid(), Ordering::SeqCst);
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let sleeper = {
            let (tid, wake) = (sleeper_tid.clone(), wake.clone());
            std::thread::spawn(move || {
                tid.store(gettid(), Ordering::SeqCst);
                // Blocked until the test lets it go: it is never woken before.
                wake.wait();
            })
        };
        assert!(eventually(
            || busy_tid.load(Ordering::SeqCst) != 0 && sleeper_tid.load(Ordering::SeqCst) != 0
        ));
        let (busy_id, sleeper_id) = (
            busy_tid.load(Ordering::SeqCst),
            sleeper_tid.load(Ordering::SeqCst),
        );
        let mut states = crate::ThreadStatReader::new();
        // The sleeper is asleep in the barrier once its state says so.
        assert!(eventually(
            || states.state(pid, sleeper_id) == crate::SchedState::Sleeping
        ));
        let first = reader.read(pid, sleeper_id).expect("sleeper's schedstat");
        let busy_first = reader.read(pid, busy_id).expect("busy thread's schedstat");
        std::thread::sleep(Duration::from_millis(100));
        let later = reader.read(pid, sleeper_id).expect("sleeper's schedstat");
        // The spinner runs at scheduler ticks (every few ms) for 100 ms, or
        // is switched out and in on a loaded machine: either moves a number.
        assert!(eventually(|| reader
            .read(pid, busy_id)
            .is_some_and(|now| now.ran_since(&busy_first))));
        assert_eq!(
            first, later,
            "a thread blocked in a barrier was scheduled in 100 ms"
        );
        assert!(!later.ran_since(&first));
        wake.wait();
        sleeper.join().unwrap();
        // It ran to leave the barrier, then ended: unreadable, not stale.
        assert!(eventually(|| reader.read(pid, sleeper_id).is_none()));
        stop.store(true, Ordering::SeqCst);
        busy.join().unwrap();
        assert_eq!(reader.read(pid, i32::MAX), None);
    }

    #[test]
    fn counts_threads_from_the_task_directory() {
        use std::io::BufRead;
        // A child of known shape: this test process's own threads come and
        // go with the other tests.
        let mut child = std::process::Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import threading, time\n\
                 for _ in range(5): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n\
                 print('ready', flush=True)\n\
                 time.sleep(60)",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 (scripts/setup.sh installs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = child.id() as i32;
        let counted = ThreadCounter::open(pid).unwrap().count();
        let listed = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count() as u64;
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(line.trim(), "ready");
        assert_eq!(counted, Some(6));
        assert_eq!(listed, 6);
        assert!(ThreadCounter::open(i32::MAX).is_err());
    }
}
