//! `pyrometer record --pid MASTER --subprocesses` against real web servers
//! running the example services of `examples/`, with real load from
//! `examples/loadgen.py` (requests only to 127.0.0.1):
//!
//! * gunicorn, 3 sync workers, image-service: every worker (read from
//!   `/proc/MASTER/task/*/children`) has a `process PID:"…"` root frame, and
//!   the deliberately slow `noise_reduction` has a large share of the samples;
//! * the same with gunicorn's gthread workers;
//! * a worker SIGKILLed mid-run: gunicorn starts another, whose PID must show
//!   up too, while pyrometer keeps running to its duration and writes its
//!   output;
//! * uvicorn `--workers 2`, fastapi-service: both workers and `count_primes`;
//! * Django under gunicorn, django-service: the heavy view's functions.
//!
//! The venvs come from `scripts/webenv.sh` (built once, then cached under
//! ~/.cache/pyrometer/venvs); if one cannot be built the test fails with
//! pip's error. Servers run in their own process group, killed whole when a
//! test ends however it ends; the load generator is bounded in time and
//! request count and killed too. The tests take turns (one server at a time
//! on a small machine).

// Not every helper of common/ is used here.
#[allow(unused_imports)]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::*;
use pyrometer_testsupport::{run_with_timeout, DEBIAN_PYTHON};

/// How long a server may take to answer /health with all its workers up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long building a venv from nothing may take (downloads included).
const VENV_TIMEOUT: Duration = Duration::from_secs(900);
/// Sampling rate of every recording here.
const RATE: &str = "100";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example_dir(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// One web test at a time: each keeps both CPUs busy.
fn web_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The venv of `examples/NAME`, built (or found cached) by scripts/webenv.sh.
/// Panics with the script's stderr (pip's error) when it cannot be built.
fn venv(name: &str) -> PathBuf {
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
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// The status code of `GET PATH` on 127.0.0.1:PORT.
fn http_status(port: u16, path: &str) -> Result<u16, String> {
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
fn children(pid: i32) -> Vec<i32> {
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

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// A server started in a process group of its own; the whole group is
/// SIGKILLed when this is dropped.
struct Server {
    name: String,
    guard: ChildGuard,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn master(&self) -> i32 {
        self.guard.pid()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until /health answers 200 and the master has `workers`
    /// children that `is_worker` accepts; returns their PIDs.
    fn wait_ready(&mut self, workers: usize, is_worker: fn(&str) -> bool) -> Vec<i32> {
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

    fn workers(&self, is_worker: fn(&str) -> bool) -> Vec<i32> {
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
fn start_server(
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

fn is_gunicorn_worker(cmd: &str) -> bool {
    cmd.contains("gunicorn")
}

fn is_spawned_worker(cmd: &str) -> bool {
    cmd.contains("spawn_main")
}

/// examples/loadgen.py driving 127.0.0.1:PORT, bounded in time and count.
struct Load {
    guard: ChildGuard,
    out: PathBuf,
    err: PathBuf,
    seconds: f64,
}

fn start_load(
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
    fn finish(mut self) -> Value {
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

/// `pyrometer record --pid MASTER --subprocesses -f raw` running.
struct Recording {
    guard: ChildGuard,
    out: PathBuf,
    stderr: PathBuf,
    seconds: f64,
    started: Instant,
}

fn start_record(scratch: &Scratch, master: i32, seconds: f64, extra: &[&str]) -> Recording {
    start_record_at(scratch, master, seconds, RATE, extra)
}

fn start_record_at(
    scratch: &Scratch,
    master: i32,
    seconds: f64,
    rate: &str,
    extra: &[&str],
) -> Recording {
    let out = scratch.file("profile.txt");
    let stderr = scratch.file("pyrometer.err");
    let mut args: Vec<String> = [
        "record",
        "--pid",
        &master.to_string(),
        "--subprocesses",
        "-f",
        "raw",
        "-r",
        rate,
        "-d",
        &seconds.to_string(),
        "--quiet",
        "-o",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(out.to_string_lossy().into_owned());
    args.extend(extra.iter().map(|s| s.to_string()));
    println!("{}", show(&args));
    let child = Command::new(PYROMETER)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).expect("pyrometer stderr"))
        .spawn()
        .expect("cannot start pyrometer");
    Recording {
        guard: ChildGuard::new(child),
        out,
        stderr,
        seconds,
        started: Instant::now(),
    }
}

/// A finished recording: samples per process and the folded stacks.
struct Profile {
    folded: Vec<(Vec<String>, u64)>,
    per_pid: BTreeMap<i32, u64>,
    total: u64,
    stderr: String,
}

impl Recording {
    fn running(&mut self) -> bool {
        matches!(self.guard.child().try_wait(), Ok(None))
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn finish(mut self) -> Profile {
        let limit = Duration::from_secs_f64(self.seconds) + RUN_TIMEOUT;
        let status = self.guard.wait_timeout(limit);
        let stderr = self.stderr();
        let status =
            status.unwrap_or_else(|| panic!("pyrometer still running after {limit:?}: {stderr}"));
        let took = self.started.elapsed().as_secs_f64();
        assert!(
            status.success(),
            "pyrometer record failed ({status}) after {took:.1} s:\n{stderr}"
        );
        assert!(
            took >= self.seconds - 0.5,
            "pyrometer stopped after {took:.1} s, before its {} s:\n{stderr}",
            self.seconds
        );
        let text = std::fs::read_to_string(&self.out)
            .unwrap_or_else(|e| panic!("pyrometer wrote no {}: {e}\n{stderr}", self.out.display()));
        let folded = parse_folded(&text).unwrap_or_else(|e| panic!("{e}"));
        let mut per_pid = BTreeMap::new();
        let mut total = 0;
        for (stack, n) in &folded {
            let pid = stack
                .first()
                .and_then(|f| process_pid(f))
                .unwrap_or_else(|| {
                    panic!("a stack without a `process PID:\"cmdline\"` root frame: {stack:?}")
                });
            *per_pid.entry(pid).or_insert(0) += n;
            total += n;
        }
        assert!(total > 0, "no samples at all:\n{stderr}");
        Profile {
            folded,
            per_pid,
            total,
            stderr,
        }
    }
}

/// The PID of a `process PID:"cmdline"` frame.
fn process_pid(frame: &str) -> Option<i32> {
    let rest = frame.strip_prefix("process ")?;
    let (pid, cmd) = rest.split_once(':')?;
    if !cmd.starts_with('"') {
        return None;
    }
    pid.parse().ok()
}

impl Profile {
    /// Samples whose stack has a frame of function `name` (any process).
    fn with_function(&self, name: &str) -> u64 {
        self.folded
            .iter()
            .filter(|(stack, _)| stack.iter().skip(1).any(|f| folded_name(f) == name))
            .map(|(_, n)| n)
            .sum()
    }

    /// The PIDs whose stacks have a frame of function `name`.
    fn pids_with_function(&self, name: &str) -> BTreeSet<i32> {
        self.folded
            .iter()
            .filter(|(stack, _)| stack.iter().skip(1).any(|f| folded_name(f) == name))
            .filter_map(|(stack, _)| stack.first().and_then(|f| process_pid(f)))
            .collect()
    }

    fn share(&self, name: &str) -> f64 {
        self.with_function(name) as f64 / self.total as f64
    }

    fn describe(&self) -> String {
        format!(
            "{} samples; per process: {:?}; pyrometer said:\n{}",
            self.total, self.per_pid, self.stderr
        )
    }

    /// Every PID of `pids` has samples.
    fn assert_has_pids(&self, what: &str, pids: &[i32]) {
        let missing: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|p| !self.per_pid.contains_key(p))
            .collect();
        assert!(
            missing.is_empty(),
            "{what}: no `process PID:` root frame for {missing:?} (expected all of {pids:?}); {}",
            self.describe()
        );
    }
}

/// The image-service under gunicorn: `workers` workers of `class`.
fn image_service(scratch: &Scratch, workers: usize, class: &str) -> (Server, Vec<i32>) {
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

const IMAGE_MIX: &str =
    "process:noise_reduction=2,process:blur=2,process:edges=1,process:thumbnail=1,health=3";

/// The noise_reduction share that counts as "large": by construction it
/// is the bulk of the work (about 60 % of all samples when measured).
const NOISE_SHARE_MIN: f64 = 0.3;

fn check_image_profile(label: &str, p: &Profile, workers: &[i32]) {
    p.assert_has_pids(label, workers);
    let share = p.share("noise_reduction");
    println!(
        "{label}: {} samples, noise_reduction {:.1} %, per process {:?}",
        p.total,
        share * 100.0,
        p.per_pid
    );
    assert!(
        share >= NOISE_SHARE_MIN,
        "{label}: noise_reduction has {:.1} % of the samples, expected at least {:.0} %; {}",
        share * 100.0,
        NOISE_SHARE_MIN * 100.0,
        p.describe()
    );
    let in_pids = p.pids_with_function("noise_reduction");
    assert!(
        in_pids.iter().all(|p| workers.contains(p)),
        "{label}: noise_reduction sampled in {in_pids:?}, not all workers {workers:?}"
    );
    // The endpoint is named by the Flask view read from the WSGI environ,
    // and it is the one that burns the CPU.
    assert_top_endpoint(p, label, "POST app.process");
}

/// The summary's endpoint table lists `endpoint` first (by CPU).
fn assert_top_endpoint(p: &Profile, label: &str, endpoint: &str) {
    let first = p
        .stderr
        .lines()
        .skip_while(|l| !l.contains("endpoints (by CPU"))
        .nth(2)
        .unwrap_or("");
    assert!(
        first.trim_start().starts_with(endpoint),
        "{label}: expected {endpoint} as the top endpoint; {}",
        p.describe()
    );
}

#[test]
fn gunicorn_sync_workers() {
    let scratch = Scratch::new("web-sync");
    venv("image-service");
    let _turn = web_lock();
    let (server, workers) = image_service(&scratch, 3, "sync");
    let load = start_load(&scratch, server.port, 9.0, 6, IMAGE_MIX, &[]);
    std::thread::sleep(Duration::from_secs(1));
    let p = start_record(&scratch, server.master(), 6.0, &[]).finish();
    check_image_profile("gunicorn sync", &p, &workers);
    let doc = load.finish();
    assert_eq!(doc["errors"], 0, "failed requests: {doc}");
    let access = std::fs::read_to_string(scratch.file("access.log")).unwrap_or_default();
    assert!(
        access.contains("POST /process"),
        "the access log (GUNICORN_ACCESS_LOG) has no request: {access:.500}"
    );
    drop(server);
}

#[test]
fn gunicorn_gthread_workers() {
    let scratch = Scratch::new("web-gthread");
    venv("image-service");
    let _turn = web_lock();
    let (server, workers) = image_service(&scratch, 2, "gthread");
    // gthread keeps connections alive: without --close one worker can
    // accept all eight and the other never serves.
    let load = start_load(&scratch, server.port, 9.0, 8, IMAGE_MIX, &["--close"]);
    std::thread::sleep(Duration::from_secs(1));
    let p = start_record(&scratch, server.master(), 6.0, &["--threads"]).finish();
    check_image_profile("gunicorn gthread", &p, &workers);
    // Requests run on the workers' thread pools: name the threads seen.
    let mut threads: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    for (stack, _) in &p.folded {
        if let (Some(pid), Some(t)) = (stack.first().and_then(|f| process_pid(f)), stack.get(1)) {
            threads.entry(pid).or_default().insert(t.clone());
        }
    }
    println!("gunicorn gthread: threads sampled per process: {threads:?}");
    assert!(
        stack_has(&p, "ThreadWorker.handle"),
        "gunicorn gthread: no ThreadWorker.handle frame; {}",
        p.describe()
    );
    load.finish();
}

fn stack_has(p: &Profile, name: &str) -> bool {
    p.with_function(name) > 0
}

#[test]
fn gunicorn_worker_killed_mid_run() {
    let scratch = Scratch::new("web-kill");
    venv("image-service");
    let _turn = web_lock();
    let (server, workers) = image_service(&scratch, 3, "sync");
    let load = start_load(&scratch, server.port, 12.0, 6, IMAGE_MIX, &[]);
    std::thread::sleep(Duration::from_secs(1));
    let mut rec = start_record(&scratch, server.master(), 9.0, &[]);
    std::thread::sleep(Duration::from_millis(2500));
    let victim = workers[0];
    // SAFETY: kill(2) of a gunicorn worker this test started.
    let rc = unsafe { libc::kill(victim, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {victim}");
    let t0 = Instant::now();
    let replacement = loop {
        let now = server.workers(is_gunicorn_worker);
        if let Some(&new) = now.iter().find(|p| !workers.contains(p)) {
            break new;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "gunicorn started no worker in place of {victim} within 10 s (workers now {now:?}); log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    println!(
        "killed worker {victim}; gunicorn started {replacement} {:.2} s later",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        rec.running(),
        "pyrometer stopped when a worker was killed: {}",
        rec.stderr()
    );
    let p = rec.finish();
    let mut expect = workers.clone();
    expect.push(replacement);
    p.assert_has_pids("worker killed", &expect);
    println!(
        "worker killed: per process {:?} (killed {victim}, new {replacement})",
        p.per_pid
    );
    assert!(
        p.pids_with_function("noise_reduction")
            .contains(&replacement),
        "the new worker {replacement} was never seen in noise_reduction; {}",
        p.describe()
    );
    load.finish();
}

#[test]
fn uvicorn_fastapi_two_workers() {
    let scratch = Scratch::new("web-fastapi");
    let venv = venv("fastapi-service");
    let _turn = web_lock();
    let port = free_port();
    let port_s = port.to_string();
    let mut server = start_server(
        &scratch,
        "fastapi-service",
        &venv.join("bin/uvicorn"),
        &[
            "app:app",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            &port_s,
            "--no-access-log",
        ],
        &[],
        port,
    );
    let workers = server.wait_ready(2, is_spawned_worker);
    let load = start_load(
        &scratch,
        port,
        9.0,
        6,
        "post:/compute=3,get:/sleep=2,get:/sync=2,health=1",
        &["--body", "{\"n\": 40000}"],
    );
    std::thread::sleep(Duration::from_secs(1));
    let p = start_record(&scratch, server.master(), 6.0, &[]).finish();
    p.assert_has_pids("uvicorn", &workers);
    let share = p.share("count_primes");
    println!(
        "uvicorn: {} samples, count_primes {:.1} %, per process {:?}",
        p.total,
        share * 100.0,
        p.per_pid
    );
    // Both workers are sampled (checked above); which of them gets the
    // compute requests is the kernel's choice (connections are accepted by
    // whichever worker wins), so the function must show in at least one.
    assert_top_endpoint(&p, "uvicorn", "POST app.compute");
    let in_pids = p.pids_with_function("count_primes");
    assert!(
        workers.iter().any(|w| in_pids.contains(w)),
        "uvicorn: count_primes seen in {in_pids:?}, expected in a worker of {workers:?}; {}",
        p.describe()
    );
    assert!(
        stack_has(&p, "compute"),
        "uvicorn: the `compute` endpoint is in no stack; {}",
        p.describe()
    );
    let doc = load.finish();
    assert_eq!(doc["errors"], 0, "failed requests: {doc}");
}

#[test]
fn django_under_gunicorn() {
    let scratch = Scratch::new("web-django");
    let venv = venv("django-service");
    let _turn = web_lock();
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut server = start_server(
        &scratch,
        "django-service",
        &venv.join("bin/gunicorn"),
        &["-w", "2", "-b", &bind, "app:application"],
        &[],
        port,
    );
    let workers = server.wait_ready(2, is_gunicorn_worker);
    let load = start_load(&scratch, port, 8.0, 4, "heavy=1,light=3", &[]);
    std::thread::sleep(Duration::from_secs(1));
    let p = start_record(&scratch, server.master(), 5.0, &[]).finish();
    p.assert_has_pids("django", &workers);
    let share = p.share("heavy_view");
    println!(
        "django: {} samples, heavy_view {:.1} %, per process {:?}",
        p.total,
        share * 100.0,
        p.per_pid
    );
    for f in ["heavy_view", "generate_text", "word_report"] {
        assert!(
            stack_has(&p, f),
            "django: {f} is in no stack; {}",
            p.describe()
        );
    }
    assert!(
        share >= 0.3,
        "django: heavy_view has {:.1} % of the samples; {}",
        share * 100.0,
        p.describe()
    );
    assert_top_endpoint(&p, "django", "GET app.heavy_view");
    let doc = load.finish();
    assert_eq!(doc["errors"], 0, "failed requests: {doc}");
}

/// Accuracy against the server's own timing: gunicorn logs each request's
/// duration (`%(D)s`, µs). With one slow endpoint (noise_reduction, tens of
/// ms per request) and a cheap one (/health) under load, pyrometer at 1 kHz
/// must give the slow endpoint the CPU share the access log gives it (within
/// 5 points) and estimate its median request time within 20 % of the log's.
#[test]
fn endpoint_shares_and_latencies_match_the_access_log() {
    let scratch = Scratch::new("web-accuracy");
    venv("image-service");
    let _turn = web_lock();
    let (server, _workers) = image_service(&scratch, 2, "sync");
    let load = start_load(
        &scratch,
        server.port,
        8.0,
        2,
        "process:noise_reduction=1,health=2",
        // 160×160: about 40 ms of pure Python per request on this machine's
        // kind, well above the 20 ms the issue's latency check is about.
        &["--image-size", "160"],
    );
    std::thread::sleep(Duration::from_secs(1));
    let p = start_record_at(&scratch, server.master(), 6.0, "1000", &[]).finish();
    let doc = load.finish();
    assert_eq!(doc["errors"], 0, "failed requests: {doc}");
    drop(server);

    let access = std::fs::read_to_string(scratch.file("access.log")).unwrap_or_default();
    let mut slow: Vec<f64> = Vec::new();
    let (mut slow_total, mut all_total) = (0.0, 0.0);
    for line in access.lines() {
        let Some(us) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        all_total += us;
        if line.contains("POST /process") {
            slow.push(us / 1000.0);
            slow_total += us;
        }
    }
    assert!(
        slow.len() >= 20,
        "too few slow requests logged: {access:.500}"
    );
    slow.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let log_p50 = slow[slow.len() / 2];
    assert!(
        log_p50 > 20.0,
        "noise_reduction should take > 20 ms, log p50 {log_p50} ms"
    );
    let log_share = 100.0 * slow_total / all_total;

    let row = p
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("POST app.process"))
        .unwrap_or_else(|| panic!("no POST app.process row; {}", p.describe()));
    let cols: Vec<&str> = row.split_whitespace().collect();
    let cpu_share: f64 = cols[2].trim_end_matches('%').parse().expect("CPU %");
    let p50: f64 = cols[5].parse().expect("p50");
    println!(
        "accuracy: access log p50 {log_p50:.1} ms, share {log_share:.1} %; pyrometer p50 {p50:.1} ms, CPU share {cpu_share:.1} %"
    );
    assert!(
        (cpu_share - log_share).abs() <= 5.0,
        "CPU share {cpu_share:.1} % vs the access log's time share {log_share:.1} %; {}",
        p.describe()
    );
    assert!(
        (p50 - log_p50).abs() <= 0.2 * log_p50,
        "estimated p50 {p50:.1} ms vs the access log's {log_p50:.1} ms; {}",
        p.describe()
    );
}
