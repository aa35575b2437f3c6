//! An embedded interpreter: `tests/embedded/launcher.c`, a C program that
//! links Debian's shared `libpython3.11.so.1.0`, runs
//! `tests/embedded/embedded_app.py` with `Py_Initialize` +
//! `PyRun_SimpleFileExFlags`, and blocks in `handle_request` at a marked
//! line. The process's executable is the launcher, not a python binary, so
//! pyrometer must find the interpreter in the mapped libpython.
//!
//! The test compiles the launcher with
//! `gcc launcher.c $(python3.11-config --cflags) $(python3.11-config --embed --ldflags)`
//! using Debian's `/usr/bin/python3.11-config`; on a fresh Debian/Ubuntu
//! machine that needs `gcc` and `python3.11-dev` (CI installs both). A
//! missing compiler or python3.11-config fails the test with that advice.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pyrometer_testsupport::serde_json::{self, Value};
use pyrometer_testsupport::{run_with_timeout, ChildGuard};

const PYROMETER: &str = env!("CARGO_BIN_EXE_pyrometer");
const PYTHON_CONFIG: &str = "/usr/bin/python3.11-config";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn marker_line(path: &Path, marker: &str) -> i64 {
    let text = std::fs::read_to_string(path).expect("read the script");
    text.lines()
        .position(|l| l.contains(marker))
        .map(|i| i as i64 + 1)
        .unwrap_or_else(|| panic!("no {marker} in {}", path.display()))
}

fn config_flags(arg: &[&str]) -> Vec<String> {
    let out = run_with_timeout(
        Command::new(PYTHON_CONFIG).args(arg),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| {
        panic!("{PYTHON_CONFIG} failed ({e}); install python3.11-dev (Debian/Ubuntu)")
    });
    assert!(out.status.success(), "{PYTHON_CONFIG} {arg:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Compile the launcher into `dir`.
fn build_launcher(dir: &Path) -> PathBuf {
    assert!(
        Path::new(PYTHON_CONFIG).exists(),
        "{PYTHON_CONFIG} is missing: install python3.11-dev (it provides the headers, \
         libpython3.11.so and python3.11-config)"
    );
    let source = repo_root().join("tests/embedded/launcher.c");
    let exe = dir.join("launcher");
    let mut cmd = Command::new("gcc");
    cmd.arg(&source)
        .args(config_flags(&["--cflags"]))
        .args(config_flags(&["--embed", "--ldflags"]))
        .arg("-o")
        .arg(&exe);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("cannot run gcc ({e}): install gcc"));
    assert!(
        out.status.success(),
        "compiling {} failed:\n{}",
        source.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Start the launcher and wait for its ready line.
fn start(launcher: &Path, script: &Path) -> (ChildGuard, Value) {
    let child = Command::new(launcher)
        .arg(script)
        // A fixed PATH: the embedded interpreter derives its prefix from
        // the program name found on PATH (Debian's /usr, not a pyenv shim).
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the launcher");
    let mut guard = ChildGuard::new(child);
    let stdout = guard.child().stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the embedded script's ready line");
    let doc: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(doc["pid"].as_i64(), Some(i64::from(guard.pid())), "{doc}");
    (guard, doc)
}

fn pyrometer(args: &[&str]) -> std::process::Output {
    run_with_timeout(Command::new(PYROMETER).args(args), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn an_interpreter_embedded_in_a_c_program() {
    /// Removes the scratch directory however the test ends.
    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let scratch =
        Scratch(std::env::temp_dir().join(format!("pyrometer-embedded-{}", std::process::id())));
    let dir = scratch.0.clone();
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let launcher = build_launcher(&dir);
    let script = repo_root().join("tests/embedded/embedded_app.py");
    let handler_line = marker_line(&script, "# HANDLER_LINE");
    let worker_line = marker_line(&script, "# WORKER_LINE");

    let (guard, ready) = start(&launcher, &script);
    let pid = guard.pid();
    assert_eq!(ready["embedded_by"], "launcher", "{ready}");
    let version = ready["version"].as_str().expect("version").to_string();
    assert!(version.starts_with("3.11."), "{ready}");

    // The premise: the executable is the launcher and libpython is mapped.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    assert_eq!(exe, launcher.canonicalize().expect("launcher path"));
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let libpython = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libpython3.11.so"))
        .unwrap_or_else(|| panic!("libpython3.11 is not mapped:\n{maps}"))
        .to_string();

    // dump --json: the exact function, file and line of both threads.
    let pid_s = pid.to_string();
    let out = pyrometer(&["dump", "--pid", &pid_s, "--json"]);
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["pid"].as_i64(), Some(i64::from(pid)));
    assert_eq!(doc["python_version"].as_str(), Some(version.as_str()));
    let threads = doc["threads"].as_array().expect("threads");
    assert_eq!(threads.len(), 2, "{doc:#}");
    let script_s = script.to_str().expect("utf-8 path");
    let frames_of = |leaf: &str| -> Vec<(String, String, i64)> {
        let t = threads
            .iter()
            .find(|t| t["frames"][0]["name"] == leaf)
            .unwrap_or_else(|| panic!("no thread in {leaf}: {doc:#}"));
        t["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap_or("?").to_string(),
                    f["filename"].as_str().unwrap_or("?").to_string(),
                    f["line"].as_i64().unwrap_or(-1),
                )
            })
            .collect()
    };
    let main = frames_of("handle_request");
    assert_eq!(
        main[0],
        ("handle_request".into(), script_s.into(), handler_line),
        "{doc:#}"
    );
    assert_eq!(
        main.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        vec!["handle_request", "main", "<module>"],
        "{doc:#}"
    );
    let worker = frames_of("worker_loop");
    assert_eq!(
        worker[0],
        ("worker_loop".into(), script_s.into(), worker_line),
        "{doc:#}"
    );
    assert!(worker.iter().any(|f| f.0 == "Thread.run"), "{doc:#}");

    // The text form names libpython as the interpreter's binary.
    let out = pyrometer(&["dump", "--pid", &pid_s]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains(&format!("Python v{version} ({libpython})")),
        "{text}"
    );

    // record: samples of the embedded interpreter (its threads sleep,
    // hence --idle).
    let folded = dir.join("embedded.txt");
    let folded_s = folded.to_str().expect("utf-8 path");
    let out = pyrometer(&[
        "record", "--pid", &pid_s, "-d", "1", "-r", "50", "-f", "raw", "--idle", "-o", folded_s,
    ]);
    assert!(
        out.status.success(),
        "record failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&folded).expect("folded output");
    let mut handler_samples = 0u64;
    let mut total = 0u64;
    for line in text.lines() {
        let (stack, count) = line.rsplit_once(' ').expect("stack count");
        let count: u64 = count.parse().expect("count");
        total += count;
        let leaf = stack.rsplit(';').next().unwrap_or("");
        // Folded stacks show file names without directories by default.
        if leaf == format!("handle_request (embedded_app.py:{handler_line})") {
            handler_samples += count;
        }
    }
    assert!(total >= 20, "too few samples ({total}):\n{text}");
    assert!(
        handler_samples >= 10,
        "handle_request samples {handler_samples}:\n{text}"
    );
    println!(
        "embedded {version} in {}: dump exact, {total} samples ({handler_samples} in handle_request)",
        launcher.display()
    );

    // The target dies before its directory goes.
    drop(guard);
    drop(scratch);
}
