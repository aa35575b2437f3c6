//! Shared by `dump.rs` and `record.rs`: running the `pyrometer` binary,
//! the target scripts, and collecting failures into a per-interpreter
//! matrix (one failing check never hides the others).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub mod load;
pub mod procfs;
pub mod run;
pub mod web;

#[allow(unused_imports)]
pub use procfs::*;
#[allow(unused_imports)]
pub use run::*;

pub use pyrometer_testsupport::serde_json::{self, Value};
#[allow(unused_imports)]
pub use pyrometer_testsupport::{par_map, require_all, ChildGuard, Interp};

/// The binary under test.
pub const PYROMETER: &str = env!("CARGO_BIN_EXE_pyrometer");

/// Exit codes (crates/cli/src/exit.rs).
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_NO_PROCESS: i32 = 3;
pub const EXIT_NOT_PYTHON: i32 = 5;

/// A `pyrometer` run never takes longer than this in these tests.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Tests that keep CPUs busy take this lock, so that two of them (each
/// already running interpreters in parallel) never overload the machine.
pub fn cpu_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `crates/cli/tests/targets/NAME`, absolute.
pub fn target(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/targets")
        .join(name)
}

/// Run `pyrometer ARGS...` to completion.
pub fn pyrometer<S: AsRef<OsStr>>(args: &[S]) -> Output {
    pyrometer_testsupport::run_with_timeout(Command::new(PYROMETER).args(args), RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A command line for messages.
pub fn show<S: AsRef<OsStr>>(args: &[S]) -> String {
    let mut s = String::from("pyrometer");
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory for output files, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("pyrometer-itest-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Start a target and parse its ready line.
pub fn start_target(
    interp: &Interp,
    script: &str,
    args: &[&str],
) -> Result<(ChildGuard, Value), String> {
    let (guard, line) = pyrometer_testsupport::try_spawn_python(
        interp,
        &target(script),
        args,
        pyrometer_testsupport::READY_TIMEOUT,
    )?;
    let doc: Value = serde_json::from_str(&line)
        .map_err(|e| format!("{script}: bad ready line ({e}): {line}"))?;
    if doc["pid"].as_i64() != Some(i64::from(guard.pid())) {
        return Err(format!(
            "{script}: ready line has pid {}, child is {}",
            doc["pid"],
            guard.pid()
        ));
    }
    // The thread that printed the ready line parks next: until it has, a
    // read can still catch it printing.
    if let Some(tid) = doc["emitter_native_id"].as_i64() {
        wait_asleep(guard.pid(), tid).map_err(|e| format!("{script}: {e}"))?;
    }
    Ok((guard, doc))
}

/// The failures of one interpreter, by check group.
pub struct Checks {
    pub interp: Interp,
    pub groups: BTreeMap<&'static str, (usize, Vec<String>)>,
    /// Measurements worth printing under the matrix.
    pub notes: Vec<String>,
}

impl Checks {
    pub fn new(interp: &Interp) -> Checks {
        Checks {
            interp: interp.clone(),
            groups: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    pub fn note(&mut self, what: impl Into<String>) {
        self.notes.push(what.into());
    }

    /// Record one check; returns `ok`.
    pub fn check(&mut self, group: &'static str, ok: bool, what: impl FnOnce() -> String) -> bool {
        let g = self.groups.entry(group).or_default();
        g.0 += 1;
        if !ok {
            g.1.push(what());
        }
        ok
    }

    /// `got == want`.
    pub fn eq<T: PartialEq + std::fmt::Debug>(
        &mut self,
        group: &'static str,
        what: impl std::fmt::Display,
        got: T,
        want: T,
    ) -> bool {
        let ok = got == want;
        self.check(group, ok, || {
            format!("{what}: got {got:?}, expected {want:?}")
        })
    }

    pub fn fail(&mut self, group: &'static str, what: impl Into<String>) {
        let what = what.into();
        self.check(group, false, || what);
    }

    pub fn failed(&self) -> bool {
        self.groups.values().any(|(_, f)| !f.is_empty())
    }
}

/// Print the matrix (interpreters × groups) and fail with every failure.
pub fn finish(title: &str, groups: &[&'static str], rows: &[Checks]) {
    let mut table = format!("{title}\n{:<16} {:<8}", "interpreter", "version");
    for g in groups {
        table.push_str(&format!(" {g:>11}"));
    }
    table.push('\n');
    let mut failures = Vec::new();
    for row in rows {
        table.push_str(&format!(
            "{:<16} {:<8}",
            row.interp.label,
            row.interp.version_string()
        ));
        for g in groups {
            let (n, bad) = row
                .groups
                .get(g)
                .map(|(n, f)| (*n, f.len()))
                .unwrap_or((0, 0));
            let cell = if n == 0 {
                "-".to_string()
            } else if bad == 0 {
                format!("ok {n}")
            } else {
                format!("FAIL {bad}/{n}")
            };
            table.push_str(&format!(" {cell:>11}"));
        }
        table.push('\n');
        for (g, (_, list)) in &row.groups {
            assert!(groups.contains(g), "check group {g} is not in the matrix");
            for f in list {
                failures.push(format!("{} [{g}] {f}", row.interp.label));
            }
        }
    }
    for row in rows {
        for n in &row.notes {
            table.push_str(&format!("{:<16} {n}\n", row.interp.label));
        }
    }
    println!("{table}");
    assert!(
        failures.is_empty(),
        "{title}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Parse folded stacks: `(frames root first, count)` per line.
pub fn parse_folded(text: &str) -> Result<Vec<(Vec<String>, u64)>, String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (stack, count) = l
                .rsplit_once(' ')
                .ok_or_else(|| format!("no count in folded line {l:?}"))?;
            let count = count
                .parse::<u64>()
                .map_err(|e| format!("bad count in folded line {l:?}: {e}"))?;
            Ok((stack.split(';').map(str::to_string).collect(), count))
        })
        .collect()
}

/// The function name of a folded frame `name (file:line)`.
pub fn folded_name(frame: &str) -> &str {
    frame.rsplit_once(" (").map(|(n, _)| n).unwrap_or(frame)
}

/// Wait until thread `tid` of `pid` has been asleep (`S` in its `stat`) at
/// three polls in a row: a target prints its ready line just before it
/// parks, so a recording started at once can still catch it printing.
pub fn wait_asleep(pid: i32, tid: i64) -> Result<(), String> {
    let path = format!("/proc/{pid}/task/{tid}/stat");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut asleep = 0;
    while asleep < 3 {
        let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        // The state follows the command name's closing parenthesis.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        asleep = if state == Some('S') { asleep + 1 } else { 0 };
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "thread {tid} of {pid} did not fall asleep (state {state:?})"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(())
}

/// Exit code of a denied permission (crates/cli/src/exit.rs).
pub const EXIT_PERMISSION: i32 = 4;

/// A `pyrometer` started in the background, its stdout and stderr collected
/// by threads (so that a full pipe never blocks it).
pub struct Background {
    pub child: std::process::Child,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

/// What a background run left.
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn collect(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

impl Background {
    /// Start `pyrometer ARGS...`.
    pub fn start<S: AsRef<OsStr>>(args: &[S]) -> Background {
        Background::spawn(Command::new(PYROMETER).args(args))
    }

    /// Start a prepared command (stdin null, stdout and stderr collected).
    pub fn spawn(cmd: &mut Command) -> Background {
        use std::process::Stdio;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().map(collect);
        let stderr = child.stderr.take().map(collect);
        Background {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send `signal` to it.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) of a child this test started and has not reaped.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }

    /// Wait at most `timeout` for it to exit; on timeout it is killed and
    /// `Err` carries what it printed.
    pub fn wait(mut self, timeout: Duration) -> Result<Finished, String> {
        let t0 = std::time::Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().ok().flatten() {
                break Some(s);
            }
            if t0.elapsed() > timeout {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let status = match status {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let s = self.child.wait().expect("wait");
                let f = self.collect_output(s);
                return Err(format!(
                    "pyrometer did not finish within {timeout:?}; stderr: {}",
                    f.stderr
                ));
            }
        };
        Ok(self.collect_output(status))
    }

    fn collect_output(&mut self, status: std::process::ExitStatus) -> Finished {
        let text = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        Finished {
            status,
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The problems of a pyrometer run that must never happen, whatever the
/// input: a panic, or a death by a signal other than SIGPIPE.
pub fn never_panics(status: &std::process::ExitStatus, stderr: &str) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
        return Some(format!("pyrometer panicked: {stderr}"));
    }
    match status.signal() {
        Some(s) if s != libc::SIGPIPE => Some(format!("pyrometer died of signal {s}: {stderr}")),
        _ => None,
    }
}

/// `errors: N (` and `N thread samples dropped as torn` from a record summary.
pub fn summary_counts(stderr: &str) -> Option<(u64, u64, u64)> {
    let after = |key: &str| -> Option<u64> {
        let rest = &stderr[stderr.find(key)? + key.len()..];
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let samples = after("samples:")?;
    let errors = after("errors:")?;
    let torn = stderr
        .split("ticks had a failed read), ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some((samples, errors, torn))
}

/// `/proc/PID/stat`'s state letter.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
}

/// The interpreter most tests of one behaviour run with: the newest pyenv
/// CPython among those required (every one is required by `require_all`).
pub fn one_interp() -> Interp {
    let interps = require_all();
    interps
        .iter()
        .filter(|i| i.label.starts_with("pyenv"))
        .max_by_key(|i| i.version)
        .or_else(|| interps.first())
        .cloned()
        .expect("at least one interpreter")
}

/// Wait until a running `pyrometer record` is past its start and sampling:
/// its sampling loop sleeps between ticks, so its voluntary context
/// switches climb at the sampling rate once it runs (bounded wait).
pub fn wait_sampling(pid: i32) -> Result<(), String> {
    let switches = || -> Option<u64> {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
            .trim()
            .parse()
            .ok()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match switches() {
            Some(n) if n >= 50 => return Ok(()),
            None => return Err(format!("pyrometer {pid} exited before sampling")),
            _ => {}
        }
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "pyrometer {pid} did not start sampling within 30 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
