//! pyrometer keeps a few files open per sampled thread (`wchan`, `stat`,
//! `schedstat`): a recording of many worker processes can pass the usual
//! soft limit of 1024 open files. The soft limit is raised to the hard one
//! at start; a command pyrometer launches gets the limit it would have had.

use std::process::Command;
use std::sync::OnceLock;

/// The open-file limit pyrometer was started with.
static STARTED_WITH: OnceLock<libc::rlimit> = OnceLock::new();

/// Highest soft limit asked for (a hard limit of "unlimited" is not a
/// number of files worth asking the kernel for).
const MOST_FILES: libc::rlim_t = 1 << 20;

/// Raise the soft open-file limit towards the hard one. Failure is not an
/// error: pyrometer then runs with the limit it was given.
pub fn raise_open_files() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let _ = STARTED_WITH.set(lim);
    let want = lim.rlim_max.min(MOST_FILES);
    if lim.rlim_cur >= want {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
}

/// Give a command pyrometer launches the open-file limit pyrometer was
/// started with: profiling must not change the target's environment.
pub fn launch_with_original_limits(cmd: &mut Command) {
    let Some(original) = STARTED_WITH.get().copied() else {
        return;
    };
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes one system call (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            libc::setrlimit(libc::RLIMIT_NOFILE, &original);
            Ok(())
        });
    }
}
