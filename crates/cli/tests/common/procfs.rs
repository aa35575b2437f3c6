//! Small readings of `/proc` the tests wait on or check.

use std::time::{Duration, Instant};

/// The value of `KEY:` in `/proc/PID/task/TID/status`, trimmed.
pub fn status_field(pid: i32, tid: i32, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The TracerPid of thread `tid` of `pid` (0: not traced).
pub fn tracer_of(pid: i32, tid: i32) -> Option<i32> {
    status_field(pid, tid, "TracerPid")?.parse().ok()
}

/// The file name of the program `pid` runs now.
pub fn exe_name(pid: i32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(exe.file_name()?.to_string_lossy().into_owned())
}

/// Wait (bounded) until `pid` runs `name` (its exec is done).
pub fn wait_exe(pid: i32, name: &str) {
    let t0 = Instant::now();
    while exe_name(pid).as_deref() != Some(name) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{pid} never ran {name}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
