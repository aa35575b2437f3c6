//! Test-only helpers shared by pyrometer's integration tests: the one
//! implementation of "which CPython interpreters does this machine have, and
//! which must it have", and helpers to run Python target scripts.
//!
//! # Interpreters
//!
//! [`interpreters`] discovers pyenv's CPython 3.8–3.13 installs (the pyenv
//! root is `pyenv root` when pyenv is on `PATH`, else `$PYENV_ROOT`, else
//! `$HOME/.pyenv`; `versions/3.8*` … `versions/3.13*`, `bin/python3`) and
//! Debian's `/usr/bin/python3.11`, and asks each for its version.
//!
//! [`expected_interpreters`] is what the tests insist on: one pyenv install
//! of each of 3.8, 3.9, 3.10, 3.11, 3.12 and 3.13 plus `/usr/bin/python3.11`
//! — unless `PYROMETER_EXPECTED_PYTHONS=/path/a,/path/b` names exactly the
//! interpreters to use (e.g. in CI images without pyenv).
//!
//! [`require_all`] returns the interpreters to run, prints the matrix, and
//! panics with a list of what is missing: a missing interpreter is a
//! failure, never a silent skip.
//!
//! # Targets
//!
//! [`spawn_python`] starts a script and waits (bounded) for its first
//! stdout line, the "ready" JSON document; [`ChildGuard`] kills and reaps
//! the child when dropped, whatever happened.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Re-exported so that test crates parse JSON without a dependency of their own.
pub use serde_json;

pub mod chrometrace;

/// Names the interpreters to test instead of the default expectation.
pub const ENV_EXPECTED: &str = "PYROMETER_EXPECTED_PYTHONS";

/// The pyenv minor versions the tests expect by default.
pub const EXPECTED_PYENV_MINORS: [u8; 6] = [8, 9, 10, 11, 12, 13];

/// Debian's interpreter, expected by default.
pub const DEBIAN_PYTHON: &str = "/usr/bin/python3.11";

/// How long [`spawn_python`] waits for the "ready" line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Interpreters

/// One CPython interpreter to test against.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interp {
    /// The executable.
    pub path: PathBuf,
    /// `sys.version_info[:3]`, as the interpreter reported it.
    pub version: (u8, u8, u8),
    /// A short name for reports: `pyenv-3.8.18`, `debian-3.11.2`, or
    /// `env-3.12.1` for interpreters named by `PYROMETER_EXPECTED_PYTHONS`.
    pub label: String,
}

impl Interp {
    /// `3.11.2`.
    pub fn version_string(&self) -> String {
        let (a, b, c) = self.version;
        format!("{a}.{b}.{c}")
    }

    /// `(3, 11)`.
    pub fn minor(&self) -> (u8, u8) {
        (self.version.0, self.version.1)
    }
}

impl std::fmt::Display for Interp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.label, self.path.display())
    }
}

/// An interpreter the tests insist on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Some pyenv install of `3.MINOR`.
    Pyenv {
        /// The minor version.
        minor: u8,
    },
    /// This exact executable.
    Path(PathBuf),
}

impl Expected {
    /// Whether `interp` satisfies this expectation.
    pub fn is_met_by(&self, interp: &Interp) -> bool {
        match self {
            Expected::Pyenv { minor } => {
                interp.version.0 == 3
                    && interp.version.1 == *minor
                    && pyenv_root().is_some_and(|r| interp.path.starts_with(r.join("versions")))
            }
            Expected::Path(p) => &interp.path == p,
        }
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Pyenv { minor } => {
                let root = pyenv_root()
                    .map(|r| r.join("versions").display().to_string())
                    .unwrap_or_else(|| "<no pyenv root: no pyenv on PATH and no $HOME>".into());
                write!(f, "pyenv 3.{minor} ({root}/3.{minor}*/bin/python3)")
            }
            Expected::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The pyenv root: `pyenv root` if pyenv is on `PATH`, else `$PYENV_ROOT`,
/// else `$HOME/.pyenv`.
pub fn pyenv_root() -> Option<PathBuf> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Ok(out) = Command::new("pyenv").arg("root").output() {
            let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !s.is_empty() {
                return Some(PathBuf::from(s));
            }
        }
        if let Some(r) = std::env::var_os("PYENV_ROOT").filter(|r| !r.is_empty()) {
            return Some(PathBuf::from(r));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv"))
    })
    .clone()
}

/// What discovery found: usable interpreters, and candidates that exist but
/// could not be used (with the reason).
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Usable interpreters, sorted by version then path.
    pub found: Vec<Interp>,
    /// `(path, why)` of candidates that failed their version probe.
    pub broken: Vec<(PathBuf, String)>,
    /// Free-threaded builds, which pyrometer does not support: left out.
    pub skipped: Vec<PathBuf>,
}

/// The candidate executables of pyenv and Debian, in a stable order.
fn candidates() -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    if let Some(root) = pyenv_root() {
        if let Ok(dir) = std::fs::read_dir(root.join("versions")) {
            let mut names: Vec<String> = dir
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            names.sort();
            for name in names {
                // versions/3.8* … versions/3.13*: "3.MINOR" then anything
                // that does not continue the number (3.1 is not 3.13).
                let Some(rest) = name.strip_prefix("3.") else {
                    continue;
                };
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let Ok(minor) = digits.parse::<u8>() else {
                    continue;
                };
                if !EXPECTED_PYENV_MINORS.contains(&minor) {
                    continue;
                }
                let exe = root.join("versions").join(&name).join("bin/python3");
                if exe.exists() {
                    out.push((exe, "pyenv"));
                }
            }
        }
    }
    if Path::new(DEBIAN_PYTHON).exists() {
        out.push((PathBuf::from(DEBIAN_PYTHON), "debian"));
    }
    out
}

const FREE_THREADED: &str = "a free-threaded build (pyrometer does not support those)";

const PROBE: &str = "import sys, sysconfig; \
print('%d.%d.%d' % sys.version_info[:3], sysconfig.get_config_var('Py_GIL_DISABLED') or 0)";

/// Ask `path` for its version. Free-threaded builds are refused: pyrometer
/// does not support them.
fn probe(path: &Path, source: &str) -> Result<Interp, String> {
    let out = run_with_timeout(
        Command::new(path).args(["-I", "-c", PROBE]),
        Duration::from_secs(30),
    )?;
    if !out.status.success() {
        return Err(format!(
            "version probe failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let version = words.next().unwrap_or("");
    let parts: Vec<u8> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    let [a, b, c] = parts[..] else {
        return Err(format!("unexpected version probe output {text:?}"));
    };
    if words.next() == Some("1") {
        return Err(FREE_THREADED.into());
    }
    Ok(Interp {
        path: path.to_path_buf(),
        version: (a, b, c),
        label: format!("{source}-{a}.{b}.{c}"),
    })
}

/// Probe every path in parallel; keep the order.
fn probe_all(paths: &[(PathBuf, &'static str)]) -> Discovery {
    let results = par_map(paths, 8, |(p, source)| probe(p, source));
    let mut d = Discovery::default();
    for ((path, _), r) in paths.iter().zip(results) {
        match r {
            Ok(i) => d.found.push(i),
            Err(e) if e == FREE_THREADED => d.skipped.push(path.clone()),
            Err(e) => d.broken.push((path.clone(), e)),
        }
    }
    d
}

/// Discover pyenv's CPython 3.8–3.13 and Debian's `/usr/bin/python3.11`,
/// each asked for its version (cached for the test binary's lifetime).
pub fn discover() -> Discovery {
    static FOUND: OnceLock<Discovery> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let mut d = probe_all(&candidates());
            d.found
                .sort_by(|a, b| (a.version, &a.path).cmp(&(b.version, &b.path)));
            d
        })
        .clone()
}

/// The discovered interpreters (see [`discover`]).
pub fn interpreters() -> Vec<Interp> {
    discover().found
}

/// The paths named by `PYROMETER_EXPECTED_PYTHONS`, if it is set.
pub fn expected_override() -> Option<Vec<PathBuf>> {
    let list = std::env::var(ENV_EXPECTED).ok()?;
    Some(
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect(),
    )
}

/// The interpreters the tests insist on: pyenv 3.8 … 3.13 and
/// `/usr/bin/python3.11`, or exactly the paths of `PYROMETER_EXPECTED_PYTHONS`.
pub fn expected_interpreters() -> Vec<Expected> {
    match expected_override() {
        Some(paths) => paths.into_iter().map(Expected::Path).collect(),
        None => EXPECTED_PYENV_MINORS
            .iter()
            .map(|&minor| Expected::Pyenv { minor })
            .chain([Expected::Path(PathBuf::from(DEBIAN_PYTHON))])
            .collect(),
    }
}

/// The interpreters to test, or why that set is incomplete: with
/// `PYROMETER_EXPECTED_PYTHONS`, exactly the interpreters it names; else
/// every discovered one (all pyenv 3.8–3.13 installs and Debian's).
pub fn resolve() -> Result<Vec<Interp>, Vec<String>> {
    if let Some(paths) = expected_override() {
        let (exist, absent): (Vec<_>, Vec<_>) = paths.into_iter().partition(|p| p.exists());
        let d = probe_all(&exist.into_iter().map(|p| (p, "env")).collect::<Vec<_>>());
        let mut problems: Vec<String> = absent
            .iter()
            .map(|p| {
                format!(
                    "missing: {} (named by {ENV_EXPECTED}; does not exist)",
                    p.display()
                )
            })
            .collect();
        problems.extend(
            d.broken
                .iter()
                .map(|(p, why)| format!("unusable: {}: {why}", p.display())),
        );
        problems.extend(
            d.skipped
                .iter()
                .map(|p| format!("unusable: {}: {FREE_THREADED}", p.display())),
        );
        return if problems.is_empty() {
            Ok(d.found)
        } else {
            Err(problems)
        };
    }
    let d = discover();
    let mut problems: Vec<String> = expected_interpreters()
        .iter()
        .filter(|e| !d.found.iter().any(|i| e.is_met_by(i)))
        .map(|e| format!("missing: {e}"))
        .collect();
    problems.extend(
        d.broken
            .iter()
            .map(|(p, why)| format!("unusable: {}: {why}", p.display())),
    );
    if problems.is_empty() {
        Ok(d.found)
    } else {
        Err(problems)
    }
}

/// The matrix as a table, one interpreter per row.
pub fn matrix(interps: &[Interp]) -> String {
    let mut s = format!("interpreter matrix ({} interpreters):\n", interps.len());
    for i in interps {
        s.push_str(&format!("  {:<16} {}\n", i.label, i.path.display()));
    }
    s
}

/// The interpreters to test. Prints the matrix that will run; panics,
/// listing everything that is missing, if an expected interpreter is not
/// there (set `PYROMETER_EXPECTED_PYTHONS` to name what the machine has).
pub fn require_all() -> Vec<Interp> {
    match resolve() {
        Ok(found) => {
            let mut m = matrix(&found);
            for p in discover().skipped {
                m.push_str(&format!("  (left out: {}: {FREE_THREADED})\n", p.display()));
            }
            println!("{m}");
            found
        }
        Err(problems) => {
            let expected: Vec<String> = expected_interpreters()
                .iter()
                .map(|e| format!("  {e}"))
                .collect();
            panic!(
                "the interpreters these tests must run on are not all there:\n  {}\n\
                 expected:\n{}\n\
                 discovered on this machine (pyenv, Debian): {}\
                 Install them (pyenv install 3.X) or set {ENV_EXPECTED}=/path/python,... \
                 to name the interpreters to test.",
                problems.join("\n  "),
                expected.join("\n"),
                matrix(&interpreters()),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Children

/// A child process that is killed and reaped when dropped.
///
/// When made by [`spawn_python`], its stdout lines after the first are
/// available through [`ChildGuard::next_line`] and its stderr is collected
/// (see [`ChildGuard::stderr`]).
pub struct ChildGuard {
    child: Child,
    lines: Option<Receiver<std::io::Result<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl ChildGuard {
    /// Guard a child (its stdout and stderr are left as they are).
    pub fn new(child: Child) -> Self {
        ChildGuard {
            child,
            lines: None,
            stderr: Arc::default(),
        }
    }

    /// The child's PID.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The child itself.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The next stdout line (without its newline), waiting at most `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Result<String, String> {
        let rx = self
            .lines
            .as_ref()
            .ok_or("the child's stdout is not captured")?;
        match rx.recv_timeout(timeout) {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(e)) => Err(format!("reading the child's stdout: {e}")),
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "no line from the child within {timeout:?}; its stderr: {}",
                self.stderr()
            )),
            Err(RecvTimeoutError::Disconnected) => Err(format!(
                "the child closed its stdout; its stderr: {}",
                self.stderr()
            )),
        }
    }

    /// What the child wrote to stderr so far (when captured).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Wait at most `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if t0.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `python -u SCRIPT ARGS...` and wait up to `timeout` for its first
/// stdout line (the "ready" document). The script should be given as an
/// absolute path: the code objects' file names are what it was run as.
pub fn try_spawn_python(
    interp: &Interp,
    script: &Path,
    args: &[&str],
    timeout: Duration,
) -> Result<(ChildGuard, String), String> {
    let child = Command::new(&interp.path)
        .arg("-u")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", interp.path.display()))?;
    let mut guard = ChildGuard::new(child);
    let stdout = guard.child.stdout.take().ok_or("no stdout")?;
    let mut stderr = guard.child.stderr.take().ok_or("no stderr")?;
    let sink = guard.stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    guard.lines = Some(rx);
    let first = guard.next_line(timeout).map_err(|e| {
        let status = guard
            .child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| format!(" (it exited: {s})"))
            .unwrap_or_default();
        format!(
            "{} {}: no ready line{status}: {e}",
            interp.label,
            script.display()
        )
    })?;
    if first.trim().is_empty() {
        return Err(format!(
            "{} {}: the first line is empty; stderr: {}",
            interp.label,
            script.display(),
            guard.stderr()
        ));
    }
    Ok((guard, first))
}

/// [`try_spawn_python`] with [`READY_TIMEOUT`], panicking on failure.
pub fn spawn_python(interp: &Interp, script: &Path, args: &[&str]) -> (ChildGuard, String) {
    try_spawn_python(interp, script, args, READY_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// Run a command to completion with captured output, killing it after
/// `timeout` (an error then).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => r.map_err(|e| format!("waiting for {cmd:?}: {e}")),
        Err(_) => {
            // The waiting thread owns the child; signal it by PID (it cannot
            // have been reaped, so the PID is still the child's).
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let out = rx.recv().ok().and_then(Result::ok);
            Err(format!(
                "{cmd:?} did not finish within {timeout:?}; stderr: {}",
                out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default()
            ))
        }
    }
}

// ---------------------------------------------------------------------------
// Parallelism

/// `f` over `items` on at most `workers` threads; results in input order.
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            s.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    let i = *n;
                    *n += 1;
                    i
                };
                let Some(item) = items.get(i) else {
                    break;
                };
                let r = f(item);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|r| r.expect("a worker panicked"))
        .collect()
}

/// The distinct minor versions in `interps`, for reports.
pub fn minors(interps: &[Interp]) -> BTreeSet<(u8, u8)> {
    interps.iter().map(Interp::minor).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_map_keeps_order() {
        let v: Vec<u32> = (0..50).collect();
        assert_eq!(
            par_map(&v, 3, |x| x * 2),
            (0..50).map(|x| x * 2).collect::<Vec<_>>()
        );
        assert!(par_map(&Vec::<u32>::new(), 3, |x| *x).is_empty());
    }

    #[test]
    fn run_with_timeout_kills() {
        let t0 = Instant::now();
        let r = run_with_timeout(Command::new("sleep").arg("30"), Duration::from_millis(200));
        assert!(r.is_err());
        assert!(t0.elapsed() < Duration::from_secs(10));
    }
}
