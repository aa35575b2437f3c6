//! Per-thread scheduler state, read cheaply on every tick.
//!
//! `/proc/PID/task/TID/stat` says it (`R` is running or runnable), but the
//! kernel formats some fifty fields to say it: about 2.5 µs per read, a
//! third of a whole sample. `/proc/PID/task/TID/wchan` is formatted from the
//! same scheduler state and costs a quarter of that for a running thread,
//! half for a sleeping one: `0` for a task that is running, runnable or
//! waking, the kernel function it sleeps in otherwise.
//!
//! A `0` can also mean "cannot tell": a kernel that hides it (no kallsyms)
//! says `0` for every thread. That is probed once per process, on a thread
//! of ours blocked on a channel; where it cannot tell, `stat` is read. A
//! zombie's `wchan` is `0` too: every thread's first `0` and every 64th
//! after it are checked against `stat`, which tells a gone thread. (A thread
//! `stat` calls sleeping while `wchan` says `0` is not proof of anything: a
//! thread falling asleep sets its state before it leaves the run queue, and
//! a web worker naps and wakes thousands of times a second. Giving up
//! `wchan` for such a thread, as an earlier version did, read `stat` for
//! every busy worker.)

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::process::{gettid, SchedState};

/// A `wchan` that says running is checked against `stat` this often.
const CHECK_EVERY: u32 = 64;

/// The open files of one thread.
#[derive(Debug, Default)]
struct ThreadFiles {
    wchan: Option<File>,
    stat: Option<File>,
    /// `wchan` reads that said running since the last check.
    unchecked: u32,
    /// `wchan` cannot be read for this thread (or it is a zombie): read
    /// `stat`.
    stat_only: bool,
}

/// Reads per-thread scheduler state cheaply: each thread's files are kept
/// open and re-read with `pread`.
#[derive(Debug)]
pub struct ThreadStatReader {
    threads: HashMap<i32, ThreadFiles>,
    buf: Vec<u8>,
    /// Whether `wchan` is used at all.
    use_wchan: bool,
}

impl Default for ThreadStatReader {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether this kernel's `wchan` names what a sleeping thread waits in:
/// probed once, on a thread of ours blocked on a channel.
pub fn wchan_tells_sleeping_threads() -> bool {
    static TELLS: OnceLock<bool> = OnceLock::new();
    *TELLS.get_or_init(probe_wchan)
}

fn probe_wchan() -> bool {
    let (tid_tx, tid_rx) = std::sync::mpsc::channel::<i32>();
    let (wake_tx, wake_rx) = std::sync::mpsc::channel::<()>();
    let Ok(sleeper) = std::thread::Builder::new()
        .name("pyrometer-wchan-probe".into())
        .spawn(move || {
            let _ = tid_tx.send(gettid());
            let _ = wake_rx.recv();
        })
    else {
        return false;
    };
    let pid = std::process::id() as i32;
    let mut files = ThreadFiles::default();
    let mut buf = vec![0u8; 1024];
    let mut tells = false;
    if let Ok(tid) = tid_rx.recv() {
        // Asleep in the channel within moments; a kernel that cannot tell
        // says `0` all along.
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if read_stat(&mut files, &mut buf, pid, tid) == SchedState::Sleeping
                && read_wchan(&mut files, &mut buf, pid, tid) == Some(SchedState::Sleeping)
            {
                tells = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let _ = wake_tx.send(());
    let _ = sleeper.join();
    tells
}

impl ThreadStatReader {
    /// A reader with no open files (it reads `wchan` where the kernel's
    /// tells sleeping threads apart).
    pub fn new() -> Self {
        Self {
            threads: HashMap::new(),
            buf: vec![0; 1024],
            use_wchan: wchan_tells_sleeping_threads(),
        }
    }

    /// A reader that always reads `stat` (for comparison).
    pub fn stat_only() -> Self {
        Self {
            use_wchan: false,
            ..Self::new()
        }
    }

    /// Whether `wchan` is in use.
    pub fn uses_wchan(&self) -> bool {
        self.use_wchan
    }

    /// The state of thread `tid` of process `pid`.
    pub fn state(&mut self, pid: i32, tid: i32) -> SchedState {
        let use_wchan = self.use_wchan;
        let files = self.threads.entry(tid).or_default();
        if !use_wchan || files.stat_only {
            return read_stat(files, &mut self.buf, pid, tid);
        }
        match read_wchan(files, &mut self.buf, pid, tid) {
            Some(SchedState::Running) => {}
            Some(other) => return other,
            // Unreadable wchan: this thread is read through stat.
            None => {
                files.stat_only = true;
                return read_stat(files, &mut self.buf, pid, tid);
            }
        }
        let first = files.stat.is_none();
        files.unchecked += 1;
        if !first && files.unchecked < CHECK_EVERY {
            return SchedState::Running;
        }
        files.unchecked = 0;
        let by_stat = read_stat(files, &mut self.buf, pid, tid);
        if by_stat == SchedState::Gone {
            // A zombie's wchan says 0 too.
            files.stat_only = true;
        }
        by_stat
    }

    /// Threads whose files are open.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether no thread's files are open.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Forget threads that are not in `alive` (closing their files).
    pub fn retain(&mut self, alive: &[i32]) {
        self.threads.retain(|tid, _| alive.contains(tid));
    }
}

/// Read `wchan`: `Some(Running)` for `0`, `Some(Sleeping)` for a function
/// name, `Some(Gone)` when the thread is gone, `None` when it cannot be read.
fn read_wchan(files: &mut ThreadFiles, buf: &mut [u8], pid: i32, tid: i32) -> Option<SchedState> {
    if files.wchan.is_none() {
        // Missing (a kernel without kallsyms has no wchan file) or refused:
        // the caller falls back to stat, which also tells a gone thread.
        files.wchan = Some(File::open(format!("/proc/{pid}/task/{tid}/wchan")).ok()?);
    }
    let file = files.wchan.as_ref()?;
    match file.read_at(buf, 0) {
        Ok(0) => None,
        Ok(n) => {
            let text = buf.get(..n)?.trim_ascii();
            Some(if text == b"0" {
                SchedState::Running
            } else {
                SchedState::Sleeping
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            // Reopened next time: the thread id may be reused.
            files.wchan = None;
            Some(SchedState::Gone)
        }
        Err(_) => None,
    }
}

/// Read `stat`: the state letter after the command name.
fn read_stat(files: &mut ThreadFiles, buf: &mut [u8], pid: i32, tid: i32) -> SchedState {
    if files.stat.is_none() {
        match File::open(format!("/proc/{pid}/task/{tid}/stat")) {
            Ok(f) => files.stat = Some(f),
            Err(_) => return SchedState::Gone,
        }
    }
    let Some(file) = files.stat.as_ref() else {
        return SchedState::Gone;
    };
    let n = match file.read_at(buf, 0) {
        Ok(n) if n > 0 => n,
        _ => {
            files.stat = None;
            return SchedState::Gone;
        }
    };
    let text = &buf[..n.min(buf.len())];
    let Some(close) = text.iter().rposition(|b| *b == b')') else {
        return SchedState::Gone;
    };
    match text.get(close + 2) {
        Some(b'R') => SchedState::Running,
        Some(b'Z') | Some(b'X') => SchedState::Gone,
        Some(_) => SchedState::Sleeping,
        None => SchedState::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::testutil::eventually;

    #[test]
    fn tells_a_spinning_thread_from_a_sleeping_one_like_stat() {
        let pid = std::process::id() as i32;
        let stop = Arc::new(AtomicBool::new(false));
        let (spin_tid, nap_tid) = (Arc::new(AtomicI32::new(0)), Arc::new(AtomicI32::new(0)));
        let spinner = {
            let (stop, tid) = (stop.clone(), spin_tid.clone());
            std::thread::spawn(move || {
                tid.store(gettid(), Ordering::SeqCst);
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let napper = {
            let (stop, tid) = (stop.clone(), nap_tid.clone());
            std::thread::spawn(move || {
                tid.store(gettid(), Ordering::SeqCst);
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        assert!(eventually(
            || spin_tid.load(Ordering::SeqCst) != 0 && nap_tid.load(Ordering::SeqCst) != 0
        ));
        let (spin, nap) = (
            spin_tid.load(Ordering::SeqCst),
            nap_tid.load(Ordering::SeqCst),
        );
        let mut fast = ThreadStatReader::new();
        let mut slow = ThreadStatReader::stat_only();
        // The spinner may be preempted on a loaded machine and the napper
        // may be waking: wait for one instant where both readers agree on
        // a running spinner and a sleeping napper, many reads in a row.
        let agreed = eventually(|| {
            (0..200).all(|_| {
                fast.state(pid, spin) == SchedState::Running
                    && slow.state(pid, spin) == SchedState::Running
                    && fast.state(pid, nap) == SchedState::Sleeping
                    && slow.state(pid, nap) == SchedState::Sleeping
            })
        });
        stop.store(true, Ordering::SeqCst);
        spinner.join().unwrap();
        napper.join().unwrap();
        assert!(
            agreed,
            "wchan and stat never agreed on a spinner and a napper"
        );
        assert!(fast.uses_wchan(), "wchan was given up on this kernel");
        assert!(eventually(|| fast.state(pid, spin) == SchedState::Gone));
        assert_eq!(fast.state(pid, i32::MAX), SchedState::Gone);
    }

    #[test]
    fn this_kernels_wchan_tells_sleeping_threads() {
        // The tests of pyrometer's thread states rely on it; a kernel that
        // hides wchan would be read through stat.
        assert!(wchan_tells_sleeping_threads());
        assert!(ThreadStatReader::new().uses_wchan());
        assert!(!ThreadStatReader::stat_only().uses_wchan());
    }

    /// A thread that falls asleep and wakes thousands of times a second (a
    /// web worker between requests) races every check of `wchan` against
    /// `stat`: that must not be taken for a kernel whose `wchan` cannot tell
    /// (which would read the costlier `stat` from then on).
    #[test]
    fn a_thread_that_naps_briefly_keeps_wchan() {
        let pid = std::process::id() as i32;
        let stop = Arc::new(AtomicBool::new(false));
        let tid = Arc::new(AtomicI32::new(0));
        let napper = {
            let (stop, tid) = (stop.clone(), tid.clone());
            std::thread::spawn(move || {
                tid.store(gettid(), Ordering::SeqCst);
                while !stop.load(Ordering::Relaxed) {
                    // Run a little, then sleep a little.
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(30) {
                        std::hint::spin_loop();
                    }
                    std::thread::sleep(Duration::from_micros(30));
                }
            })
        };
        assert!(eventually(|| tid.load(Ordering::SeqCst) != 0));
        let tid = tid.load(Ordering::SeqCst);
        let mut reader = ThreadStatReader::new();
        let (mut running, mut sleeping) = (0, 0);
        for _ in 0..64 * 300 {
            match reader.state(pid, tid) {
                SchedState::Running => running += 1,
                SchedState::Sleeping => sleeping += 1,
                _ => {}
            }
        }
        stop.store(true, Ordering::SeqCst);
        napper.join().unwrap();
        assert!(
            running > 0 && sleeping > 0,
            "{running} running, {sleeping} sleeping"
        );
        assert!(
            !reader.threads.get(&tid).is_some_and(|f| f.stat_only),
            "a napping thread was switched to stat"
        );
        assert!(reader.uses_wchan());
    }
}
