//! Stopping threads for `--blocking` sampling. Threads are seized and
//! interrupted, and always resumed: on drop, and by the kernel if pyrometer
//! itself dies (a tracee is detached when its tracer exits).

use crate::error::ProcessError;

/// Threads held stopped until this value is dropped.
#[derive(Debug)]
pub struct StoppedThreads {
    tids: Vec<i32>,
}

impl StoppedThreads {
    /// Seize and stop each of `tids`. Threads that vanish are skipped.
    pub fn stop(tids: &[i32]) -> Result<Self, ProcessError> {
        let mut held = StoppedThreads { tids: Vec::new() };
        for &tid in tids {
            // SAFETY: plain ptrace requests on a thread id; no memory is passed.
            let r = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid, 0usize, 0usize) };
            if r != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::ESRCH) {
                    continue;
                }
                return Err(ProcessError::Ptrace {
                    tid,
                    why: match tracer_of(tid) {
                        Some(tracer) if tracer != 0 => format!(
                            "{err}: it is already traced by PID {tracer} (a debugger such as gdb or strace)"
                        ),
                        _ => err.to_string(),
                    },
                });
            }
            held.tids.push(tid);
            // SAFETY: as above.
            unsafe { libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0usize, 0usize) };
            let mut status = 0;
            // SAFETY: waiting for the seized thread's stop; __WALL covers threads.
            unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        }
        Ok(held)
    }
}

/// The `TracerPid` of a thread (0: none).
fn tracer_of(tid: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

impl Drop for StoppedThreads {
    fn drop(&mut self) {
        for &tid in &self.tids {
            // SAFETY: detaching resumes the thread.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0usize, 0usize) };
        }
    }
}
