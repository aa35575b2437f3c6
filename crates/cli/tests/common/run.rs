//! Judging finished runs: what every run of pyrometer must show (no panic,
//! no death by a signal, the documented exit code), shared by the fault,
//! bad-input and never-harm tests.

use std::ffi::OsStr;
use std::process::{ExitStatus, Output};
use std::time::{Duration, Instant};

use super::{never_panics, pyrometer, serde_json, show, stderr_of, stdout_of, Finished, Value};

/// Panic if the run panicked or died of a signal other than SIGPIPE.
pub fn assert_no_panic(what: &str, status: &ExitStatus, stderr: &str) {
    if let Some(p) = never_panics(status, stderr) {
        panic!("{what}: {p}");
    }
}

/// The run ended by itself, without a panic, with exit code `code`.
pub fn assert_clean(what: &str, f: &Finished, code: i32) {
    assert_no_panic(what, &f.status, &f.stderr);
    assert_eq!(
        f.status.code(),
        Some(code),
        "{what}: exit status {}; stderr: {}",
        f.status,
        f.stderr
    );
}

/// The run succeeded (exit code 0), without a panic.
pub fn assert_ok(what: &str, f: &Finished) {
    assert_clean(what, f, 0);
}

/// Run `pyrometer ARGS...`, which must succeed; returns its stderr.
pub fn pyrometer_ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    let out = pyrometer(args);
    let stderr = stderr_of(&out);
    assert_no_panic(&show(args), &out.status, &stderr);
    assert!(
        out.status.success(),
        "{} failed ({}): {stderr}",
        show(args),
        out.status
    );
    stderr
}

/// Fail with every collected failure (one failing case never hides the
/// others).
pub fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `dump --pid PID --json`, repeated until `ready` accepts the document
/// (a target prints its ready line just before it enters the code a test
/// looks at) or `timeout` passes; the error carries the last output.
pub fn dump_json_until(
    pid: &str,
    timeout: Duration,
    ready: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    let t0 = Instant::now();
    loop {
        let out: Output = pyrometer(&["dump", "--pid", pid, "--json"]);
        if let Ok(doc) = serde_json::from_slice::<Value>(&out.stdout) {
            if ready(&doc) {
                return Ok(doc);
            }
        }
        if t0.elapsed() > timeout {
            return Err(format!(
                "not seen within {timeout:?}: {}; {}",
                stdout_of(&out).chars().take(2000).collect::<String>(),
                stderr_of(&out)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The threads of a `dump --json` document whose innermost frame is named
/// as `leaf` accepts.
pub fn threads_with_leaf(doc: &Value, leaf: impl Fn(&str) -> bool) -> Vec<&Value> {
    doc["threads"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter(|t| t["frames"][0]["name"].as_str().is_some_and(&leaf))
                .collect()
        })
        .unwrap_or_default()
}
