//! Web servers for the integration tests (web.rs, top.rs): the example
//! services' venvs from scripts/webenv.sh, servers in process groups of
//! their own, and examples/loadgen.py, bounded in time and request count.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyrometer_testsupport::{run_with_timeout, DEBIAN_PYTHON};

use super::{serde_json, ChildGuard, Scratch, Value};

/// How long a server may take to answer /health with all its workers up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long building a venv from nothing may take (downloads included).
pub const VENV_TIMEOUT: Duration = Duration::from_secs(900);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn example_dir(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// One web test at a time: each keeps both CPUs busy.
pub fn web_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The venv of `examples/NAME`, built (or found cached) by scripts/webenv.sh.
/// Panics with the script's stderr (pip's error) when it cannot be built.
pub fn venv(name: &str) -> PathBuf {
    static CACHE: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    if let Some(p) = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .get(name)
    {
        return p.clone();
    }
    let t0 = Instant::now();
    let script = repo_root().join("scripts/webenv.sh");
    let out = run_with_timeout(Command::new("bash").arg(&script).arg(name), VENV_TIMEOUT)
        .unwrap_or_else(|e| panic!("scripts/webenv.sh {name}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/webenv.sh {name} failed ({}): the venv of examples/{name} cannot be built:\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
    assert!(
        path.join("bin/python").exists(),
        "scripts/webenv.sh {name} printed {stdout:?}, which has no bin/python; stderr:\n{stderr}"
    );
    println!(
        "venv {name}: {} ({:.1} s{})",
        path.display(),
        t0.elapsed().as_secs_f64(),
        if stderr.contains("building") {
            ", built now"
        } else {
            ", cached"
        }
    );
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(name.to_string(), path.clone());
    path
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// The status code of `GET PATH` on 127.0.0.1:PORT.
pub fn http_status(port: u16, path: &str) -> Result<u16, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|_| s.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    s.take(4096)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", text.lines().next()))
}

/// The children of `pid` (every thread's), in order.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = BTreeSet::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|w| w.parse::<i32>().ok()));
            }
        }
    }
    out.into_iter().collect()
}

pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// A server started in a process group of its own; the whole group is
/// SIGKILLed when this is dropped.
pub struct Server {
    pub name: String,
    pub guard: ChildGuard,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    pub fn master(&self) -> i32 {
        self.guard.pid()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until /health answers 200 and the master has `workers`
    /// children that `is_worker` accepts; returns their PIDs.
    pub fn wait_ready(&mut self, workers: usize, is_worker: fn(&str) -> bool) -> Vec<i32> {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = self.guard.child().try_wait() {
                panic!(
                    "{}: the server exited ({status}) before it was ready; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            let last = match http_status(self.port, "/health") {
                Ok(200) => {
                    let w = self.workers(is_worker);
                    if w.len() == workers {
                        println!(
                            "{}: master {} and workers {w:?} ready on port {} in {:.1} s",
                            self.name,
                            self.master(),
                            self.port,
                            t0.elapsed().as_secs_f64()
                        );
                        return w;
                    }
                    format!("workers {w:?}, expected {workers}")
                }
                Ok(code) => format!("/health answered {code}"),
                Err(e) => format!("/health: {e}"),
            };
            assert!(
                t0.elapsed() < READY_TIMEOUT,
                "{}: not ready within {READY_TIMEOUT:?} ({last}); its log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn workers(&self, is_worker: fn(&str) -> bool) -> Vec<i32> {
        children(self.master())
            .into_iter()
            .filter(|&p| is_worker(&cmdline(p)))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own process group; no memory is involved.
        unsafe {
            libc::kill(-self.guard.pid(), libc::SIGKILL);
        }
        // The ChildGuard then reaps the master.
    }
}

/// Start `PROGRAM ARGS` in `examples/NAME` with `envs`, in a new process
/// group, logging to a file of `scratch`.
pub fn start_server(
    scratch: &Scratch,
    name: &str,
    program: &Path,
    args: &[&str],
    envs: &[(&str, String)],
    port: u16,
) -> Server {
    let log = scratch.file(&format!("{name}.log"));
    let file = File::create(&log).expect("server log");
    let child = Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .env("PYTHONUNBUFFERED", "1")
        .current_dir(example_dir(name))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    Server {
        name: name.to_string(),
        guard: ChildGuard::new(child),
        port,
        log,
    }
}

pub fn is_gunicorn_worker(cmd: &str) -> bool {
    cmd.contains("gunicorn")
}

pub fn is_spawned_worker(cmd: &str) -> bool {
    cmd.contains("spawn_main")
}

/// examples/loadgen.py driving 127.0.0.1:PORT, bounded in time and count.
pub struct Load {
    pub guard: ChildGuard,
    pub out: PathBuf,
    pub err: PathBuf,
    pub seconds: f64,
}

pub fn start_load(
    scratch: &Scratch,
    port: u16,
    seconds: f64,
    concurrency: u32,
    mix: &str,
    extra: &[&str],
) -> Load {
    let out = scratch.file("loadgen.out");
    let err = scratch.file("loadgen.err");
    let loadgen = repo_root().join("examples/loadgen.py");
    let child = Command::new(DEBIAN_PYTHON)
        .arg(&loadgen)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["--duration", &seconds.to_string()])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--mix", mix, "--max-requests", "20000", "--timeout", "20"])
        .arg("--json")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("loadgen output"))
        .stderr(File::create(&err).expect("loadgen output"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {DEBIAN_PYTHON} {}: {e}", loadgen.display()));
    Load {
        guard: ChildGuard::new(child),
        out,
        err,
        seconds,
    }
}

impl Load {
    /// Wait for the load generator's end and return its summary.
    pub fn finish(mut self) -> Value {
        let limit = Duration::from_secs_f64(self.seconds + 45.0);
        let status = self.guard.wait_timeout(limit);
        let out = std::fs::read_to_string(&self.out).unwrap_or_default();
        let err = std::fs::read_to_string(&self.err).unwrap_or_default();
        let status = status
            .unwrap_or_else(|| panic!("loadgen still running after {limit:?}; stderr: {err}"));
        let doc: Value = out
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("loadgen ({status}) printed no summary: {out}\n{err}"));
        assert!(
            status.success() && doc["ok"].as_u64().unwrap_or(0) > 0,
            "loadgen ({status}) had no successful request: {doc}\n{err}"
        );
        println!(
            "loadgen: {} requests ({} ok, {} failed) in {} s",
            doc["requests"], doc["ok"], doc["errors"], doc["seconds"]
        );
        doc
    }
}

/// The image-service under gunicorn: `workers` workers of `class`.
pub fn image_service(scratch: &Scratch, workers: usize, class: &str) -> (Server, Vec<i32>) {
    let venv = venv("image-service");
    let port = free_port();
    let mut server = start_server(
        scratch,
        "image-service",
        &venv.join("bin/gunicorn"),
        &["-c", "gunicorn.conf.py", "app:app"],
        &[
            ("GUNICORN_BIND", format!("127.0.0.1:{port}")),
            ("GUNICORN_WORKERS", workers.to_string()),
            ("GUNICORN_WORKER_CLASS", class.to_string()),
            ("GUNICORN_THREADS", "4".to_string()),
            (
                "GUNICORN_ACCESS_LOG",
                scratch.file("access.log").to_string_lossy().into_owned(),
            ),
        ],
        port,
    );
    let pids = server.wait_ready(workers, is_gunicorn_worker);
    (server, pids)
}
