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
//! * the same with a sync `def` endpoint run in anyio's thread pool: its
//!   samples are `GET app.sync_burn`, with the CPU share, request count and
//!   median the load generator's figures imply;
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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::web::*;
use common::*;

/// Sampling rate of every recording here.
const RATE: &str = "100";

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
    /// With `--group-by endpoint`: each folded stack's endpoint (its root
    /// frame, taken off the stack).
    endpoints: Vec<Option<String>>,
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
        let mut folded = parse_folded(&text).unwrap_or_else(|e| panic!("{e}"));
        let endpoints = folded
            .iter_mut()
            .map(|(stack, _)| {
                let e = stack
                    .first()
                    .and_then(|f| f.strip_prefix("endpoint ("))
                    .and_then(|f| f.strip_suffix(')'))
                    .map(str::to_string);
                if e.is_some() {
                    stack.remove(0);
                }
                e
            })
            .collect();
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
            endpoints,
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
        // Keep-alive connections stick to the worker that accepted them:
        // all four can land on one, leaving the other without samples.
        &["--body", "{\"n\": 40000}", "--close"],
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

/// The summary's row for `endpoint`: CPU %, requests, p50 ms.
fn endpoint_row(p: &Profile, endpoint: &str) -> Option<(f64, u64, f64)> {
    let row = p
        .stderr
        .lines()
        .skip_while(|l| !l.contains("endpoints (by CPU"))
        .find(|l| l.trim_start().starts_with(&format!("{endpoint} ")))?;
    let cols: Vec<&str> = row[row.find(endpoint)? + endpoint.len()..]
        .split_whitespace()
        .collect();
    let cpu = cols.first()?.trim_end_matches('%').parse().ok()?;
    let requests = cols.get(2)?.parse().ok()?;
    let p50 = cols.get(3)?.parse().ok()?;
    Some((cpu, requests, p50))
}

/// The loadgen's figures for one mix entry: (ok requests, p50 ms).
fn load_endpoint(doc: &serde_json::Value, name: &str) -> (u64, f64) {
    let e = doc["endpoints"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["endpoint"] == name))
        .unwrap_or_else(|| panic!("loadgen has no {name}: {doc}"));
    (
        e["ok"].as_u64().unwrap_or(0),
        e["p50_ms"].as_f64().unwrap_or(0.0),
    )
}

/// A sync `def` endpoint, which FastAPI runs in anyio's thread pool: its
/// samples on the worker threads are attributed to `GET app.sync_burn`
/// (method from the awaiting task's scope, view from the stack), its CPU
/// share against the async `compute` doing the same work per request
/// follows the request counts, and its request count and median follow
/// the load generator's.
#[test]
fn uvicorn_fastapi_sync_endpoint_in_the_threadpool() {
    let scratch = Scratch::new("web-fastapi-sync");
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
    // Both endpoints count the primes below 40 000 per request: tens of ms,
    // several samples per request at 100 Hz.
    let (load_seconds, record_seconds) = (9.0, 6.0);
    let load = start_load(
        &scratch,
        port,
        load_seconds,
        4,
        "get:/burn?n=40000=3,post:/compute=1,health=1",
        // Keep-alive connections stick to the worker that accepted them:
        // all four can land on one, leaving the other without samples.
        &["--body", "{\"n\": 40000}", "--close"],
    );
    std::thread::sleep(Duration::from_secs(1));
    let p = start_record(
        &scratch,
        server.master(),
        record_seconds,
        &["--group-by", "endpoint"],
    )
    .finish();
    let doc = load.finish();
    assert_eq!(doc["errors"], 0, "failed requests: {doc}");
    p.assert_has_pids("uvicorn sync", &workers);

    // Attribution: the samples in the view, by endpoint.
    let mut in_view: BTreeMap<String, u64> = BTreeMap::new();
    for ((stack, n), e) in p.folded.iter().zip(&p.endpoints) {
        if stack.iter().any(|f| folded_name(f) == "sync_burn") {
            *in_view
                .entry(e.clone().unwrap_or_else(|| "(none)".into()))
                .or_default() += n;
        }
    }
    let total: u64 = in_view.values().sum();
    let named = in_view.get("GET app.sync_burn").copied().unwrap_or(0);
    println!("uvicorn sync: samples in sync_burn by endpoint: {in_view:?}");
    assert!(
        total >= 50,
        "uvicorn sync: only {total} samples in sync_burn; {}",
        p.describe()
    );
    assert!(
        named as f64 >= 0.95 * total as f64,
        "uvicorn sync: {named} of {total} samples in sync_burn are GET app.sync_burn: {in_view:?}; {}",
        p.describe()
    );

    let (burn_cpu, burn_requests, burn_p50) = endpoint_row(&p, "GET app.sync_burn")
        .unwrap_or_else(|| panic!("no GET app.sync_burn row; {}", p.describe()));
    let (compute_cpu, _, _) = endpoint_row(&p, "POST app.compute")
        .unwrap_or_else(|| panic!("no POST app.compute row; {}", p.describe()));
    let (load_burn, load_burn_p50) = load_endpoint(&doc, "get:/burn?n=40000");
    let (load_compute, _) = load_endpoint(&doc, "post:/compute");
    // The same work per request: the CPU shares are as the request counts.
    let cpu_ratio = burn_cpu / compute_cpu.max(0.1);
    let count_ratio = load_burn as f64 / load_compute.max(1) as f64;
    // The recording covers `record_seconds` of the load's steady part.
    let expected_requests = load_burn as f64 * record_seconds / load_seconds;
    println!(
        "uvicorn sync: GET app.sync_burn CPU {burn_cpu:.1} %, {burn_requests} requests, p50 {burn_p50:.1} ms; \
         POST app.compute CPU {compute_cpu:.1} %; CPU ratio {cpu_ratio:.2} vs request ratio {count_ratio:.2}; \
         loadgen: {load_burn} burn requests in {load_seconds} s (≈ {expected_requests:.0} while recording), p50 {load_burn_p50:.1} ms"
    );
    assert!(
        cpu_ratio > count_ratio / 2.0 && cpu_ratio < count_ratio * 2.0,
        "uvicorn sync: CPU ratio burn/compute {cpu_ratio:.2}, request ratio {count_ratio:.2}; {}",
        p.describe()
    );
    assert!(
        (burn_requests as f64) > 0.5 * expected_requests
            && (burn_requests as f64) < 1.5 * expected_requests,
        "uvicorn sync: {burn_requests} GET app.sync_burn requests, about {expected_requests:.0} expected; {}",
        p.describe()
    );
    // Server-side time is at most the client's (which adds waiting for the
    // event loop, blocked by `compute`), not much less, and the median
    // request is seen by more than one sample (not cut into samples).
    assert!(
        burn_p50 <= 1.3 * load_burn_p50 + 20.0
            && burn_p50 >= 0.1 * load_burn_p50
            && burn_p50 > 10.0,
        "uvicorn sync: p50 {burn_p50:.1} ms vs the client's {load_burn_p50:.1} ms; {}",
        p.describe()
    );
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
/// must give the slow endpoint the share of the request time the access log
/// gives it (within 5 points), estimate its median request time within 20 %
/// of the log's, and see each request once.
///
/// On a loaded machine the log's times are not CPU time: a worker also
/// waits (asleep) for a starved client's upload, and requests take several
/// times longer. So the recording covers the whole load (the very requests
/// the log has, not a window of them), with `--idle` (a request's waits are
/// seen, as the log counts them), and time shares are compared: an
/// endpoint's samples among the samples in requests.
#[test]
fn endpoint_shares_and_latencies_match_the_access_log() {
    let scratch = Scratch::new("web-accuracy");
    venv("image-service");
    let _turn = web_lock();
    let (server, _workers) = image_service(&scratch, 2, "sync");
    let access_log = scratch.file("access.log");
    // The readiness checks' requests come before the load.
    let ready_requests = std::fs::read_to_string(&access_log)
        .unwrap_or_default()
        .lines()
        .count();
    let load_seconds = 6.0;
    let rec = start_record_at(
        &scratch,
        server.master(),
        load_seconds + 4.0,
        "1000",
        &["--idle", "--group-by", "endpoint"],
    );
    wait_sampling(rec.guard.pid()).unwrap_or_else(|e| panic!("{e}"));
    let load = start_load(
        &scratch,
        server.port,
        load_seconds,
        2,
        "process:noise_reduction=1,health=2",
        // 160×160: about 40 ms of pure Python per request on this machine's
        // kind, well above the 20 ms the issue's latency check is about.
        &["--image-size", "160"],
    );
    let doc = load.finish();
    assert_eq!(doc["errors"], 0, "failed requests: {doc}");
    let p = rec.finish();
    drop(server);

    let access = std::fs::read_to_string(&access_log).unwrap_or_default();
    let mut slow: Vec<f64> = Vec::new();
    let (mut slow_total, mut all_total) = (0.0, 0.0);
    for line in access.lines().skip(ready_requests) {
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
    let requests: usize = cols[4].parse().expect("requests");
    let p50: f64 = cols[5].parse().expect("p50");
    let in_requests: u64 = p
        .folded
        .iter()
        .zip(&p.endpoints)
        .filter(|(_, e)| e.as_deref().is_some_and(|e| e != "none"))
        .map(|((_, n), _)| n)
        .sum();
    let slow_samples: u64 = p
        .folded
        .iter()
        .zip(&p.endpoints)
        .filter(|(_, e)| e.as_deref() == Some("POST app.process"))
        .map(|((_, n), _)| n)
        .sum();
    let share = 100.0 * slow_samples as f64 / in_requests.max(1) as f64;
    println!(
        "accuracy: access log {} slow requests, p50 {log_p50:.1} ms, time share {log_share:.1} %; \
         pyrometer {requests} requests, p50 {p50:.1} ms, share of the samples in requests {share:.1} % \
         ({slow_samples} of {in_requests}); load average {}",
        slow.len(),
        load::loadavg()
    );
    assert!(
        (share - log_share).abs() <= 5.0,
        "share {share:.1} % of the samples in requests vs the access log's time share {log_share:.1} %; {}",
        p.describe()
    );
    assert!(
        (p50 - log_p50).abs() <= 0.2 * log_p50,
        "estimated p50 {p50:.1} ms vs the access log's {log_p50:.1} ms; {}",
        p.describe()
    );
    // Every logged request was recorded: none missed, none cut in two.
    assert!(
        requests * 10 >= slow.len() * 9 && requests * 10 <= slow.len() * 11,
        "{requests} POST app.process requests seen, {} in the access log; {}",
        slow.len(),
        p.describe()
    );
}
