//! Targets in containers, made with `unshare` (util-linux; the tests run as
//! root):
//!
//! * a **mount namespace** in which the interpreter's install is bind-mounted
//!   at a path that exists only inside it (under a tmpfs that the test's
//!   namespace never sees): pyrometer must open the binaries the target
//!   maps through `/proc/PID/root`;
//! * a **PID namespace** (`unshare --pid --fork --mount-proc`), where the
//!   target is PID 1 and numbers its threads from 1: `dump --pid HOSTPID`
//!   must work and report the PID the user gave, and the thread ids CPython
//!   stores (namespace-local) must be translated to the host's
//!   (`Process::ns_tid_map`) before `/proc/HOSTPID/task/TID/stat` says which
//!   thread is on a CPU.
//!
//! Every interpreter of the matrix is used (pyenv 3.8–3.13, Debian's 3.11:
//! both ≤ 3.10, where the TID lives in glibc's `struct pthread`, and ≥ 3.11,
//! where it is `PyThreadState.native_thread_id`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pyrometer_cpython::{locate, StackReader};
use pyrometer_process::{Process, SchedState, ThreadStatReader};
use pyrometer_testsupport::serde_json::{self, Value};
use pyrometer_testsupport::{par_map, require_all, run_with_timeout, ChildGuard, Interp};

mod common;
use common::load;

const PYROMETER: &str = env!("CARGO_BIN_EXE_pyrometer");

/// The target: a spinning thread, a sleeping thread and the main thread
/// waiting; its ready line has its PID and thread ids as it sees them.
const TARGET: &str = r#"
import json, os, sys, threading, time

def spin(ready):
    ready.set()
    x = 0
    while True:
        for i in range(1000):
            x += i

def nap(ready):
    ready.set()
    while True:
        time.sleep(0.05)  # NAP_LINE

def idle_loop():
    while True:
        time.sleep(0.05)  # IDLE_LINE

threads = {}
for name, fn in (("spinner", spin), ("napper", nap)):
    ev = threading.Event()
    t = threading.Thread(target=fn, args=(ev,), name=name, daemon=True)
    t.start()
    ev.wait()
    threads[name] = {"ident": t.ident, "native_id": getattr(t, "native_id", None)}
print(json.dumps({
    "pid": os.getpid(),
    "main": {"ident": threading.main_thread().ident,
             "native_id": getattr(threading.main_thread(), "native_id", None)},
    "threads": threads,
    "version": "%d.%d.%d" % sys.version_info[:3],
}), flush=True)
idle_loop()
"#;

fn marker(m: &str) -> i64 {
    TARGET
        .lines()
        .position(|l| l.contains(m))
        .map(|i| i as i64 + 1)
        .expect("marker")
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("pyrometer-containers-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_target(dir: &Path) -> PathBuf {
    let p = dir.join("target.py");
    std::fs::write(&p, TARGET).expect("write the target");
    p
}

/// Spawn `cmd` and wait for its first stdout line.
fn spawn_ready(mut cmd: Command, what: &str) -> (ChildGuard, Value) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start `unshare` ({e}); install util-linux"));
    let mut guard = ChildGuard::new(child);
    let stdout = guard.child().stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{what}: no ready line (unshare needs root or CAP_SYS_ADMIN)"));
    let doc: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e}: {line:?}"));
    (guard, doc)
}

fn pyrometer(args: &[&str]) -> std::process::Output {
    run_with_timeout(Command::new(PYROMETER).args(args), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `dump --json` of the target once its main thread has reached
/// `idle_loop`: the ready line is printed just before, so a dump taken at
/// once can still find the main thread printing it.
fn dump_json(pid: i32, what: &str) -> Value {
    let pid_s = pid.to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = pyrometer(&["dump", "--pid", &pid_s, "--json"]);
        assert!(
            out.status.success(),
            "{what}: dump --pid {pid} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}"));
        let main_parked = doc["threads"]
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t["frames"][0]["name"] == "idle_loop"));
        if main_parked || Instant::now() > deadline {
            return doc;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The thread of `doc` whose innermost frame is `leaf`.
fn thread_in<'a>(doc: &'a Value, leaf: &str) -> &'a Value {
    doc["threads"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["frames"][0]["name"] == leaf))
        .unwrap_or_else(|| panic!("no thread in {leaf}: {doc:#}"))
}

// ---------------------------------------------------------------------------
// (a) A mount namespace: binaries at paths only the target can see.

fn mount_namespace_case(interp: &Interp) -> String {
    let what = interp.label.clone();
    let scratch = Scratch::new(&format!("mnt-{}", interp.label));
    let script = write_target(&scratch.0);
    // The install (pyenv: versions/3.X.Y; Debian: /usr) and the executable
    // inside it.
    let root = interp
        .path
        .parent()
        .and_then(Path::parent)
        .expect("an install root")
        .to_path_buf();
    let rel = interp.path.strip_prefix(&root).expect("inside its root");
    let hidden = scratch.0.join("hidden");
    std::fs::create_dir_all(&hidden).expect("mount point");
    // The shared library (pyenv) is found through LD_LIBRARY_PATH, which
    // wins over the binary's RUNPATH, so it too is mapped from inside.
    let has_libpython = std::fs::read_dir(root.join("lib"))
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libpython3"))
        })
        .unwrap_or(false);
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs tmpfs \"$1\" && mkdir \"$1/py\" \"$1/app\" && \
             mount --bind \"$2\" \"$1/py\" && cp \"$3\" \"$1/app/target.py\" && \
             if [ \"$5\" = 1 ]; then export LD_LIBRARY_PATH=\"$1/py/lib\"; fi && \
             exec \"$1/py/$4\" -u \"$1/app/target.py\"",
        )
        .arg("sh")
        .arg(&hidden)
        .arg(&root)
        .arg(&script)
        .arg(rel)
        .arg(if has_libpython { "1" } else { "0" });
    let (guard, ready) = spawn_ready(cmd, &what);
    let pid = guard.pid();
    // `sh` execs the interpreter: the child is the target.
    assert_eq!(
        ready["pid"].as_i64(),
        Some(i64::from(pid)),
        "{what}: {ready}"
    );

    // The premise: what the target maps does not exist here.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe");
    assert!(exe.starts_with(&hidden), "{what}: exe {}", exe.display());
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let interp_binary = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libpython3"))
        .map(PathBuf::from)
        .unwrap_or_else(|| exe.clone());
    assert!(
        interp_binary.starts_with(&hidden),
        "{what}: the interpreter is mapped from {}",
        interp_binary.display()
    );
    assert!(
        !interp_binary.exists() && !exe.exists(),
        "{what}: {} must not exist outside the namespace",
        interp_binary.display()
    );

    let doc = dump_json(pid, &what);
    assert_eq!(doc["pid"].as_i64(), Some(i64::from(pid)), "{what}");
    assert_eq!(doc["python_version"], ready["version"], "{what}");
    let main = thread_in(&doc, "idle_loop");
    let target_file = hidden.join("app/target.py");
    assert_eq!(
        main["frames"][0]["filename"].as_str(),
        target_file.to_str(),
        "{what}"
    );
    assert_eq!(
        main["frames"][0]["line"].as_i64(),
        Some(marker("# IDLE_LINE"))
    );
    assert_eq!(
        thread_in(&doc, "nap")["frames"][0]["line"].as_i64(),
        Some(marker("# NAP_LINE")),
        "{what}"
    );
    thread_in(&doc, "spin");

    // The text form names the binary by the target's path.
    let out = pyrometer(&["dump", "--pid", &pid.to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("({})", interp_binary.display())),
        "{what}: {text}"
    );
    drop(guard);
    format!("{what}: mount namespace, read {}", interp_binary.display())
}

#[test]
fn a_target_in_its_own_mount_namespace() {
    let interps = require_all();
    let report = par_map(&interps, 3, mount_namespace_case);
    let minors: Vec<(u8, u8)> = interps.iter().map(Interp::minor).collect();
    assert!(minors.iter().any(|m| *m <= (3, 10)) && minors.iter().any(|m| *m >= (3, 11)));
    for line in report {
        println!("{line}");
    }
}

// ---------------------------------------------------------------------------
// (b) A PID namespace.

/// A target that is PID 1 of its own PID namespace, and its host PID.
struct PidNsTarget {
    _guard: ChildGuard,
    host_pid: i32,
    ready: Value,
}

fn start_in_pid_namespace(interp: &Interp, script: &Path) -> PidNsTarget {
    let what = &interp.label;
    let mut cmd = Command::new("unshare");
    // --kill-child: the target dies with `unshare`, even on SIGKILL.
    cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(&interp.path)
        .arg("-u")
        .arg(script);
    let (guard, ready) = spawn_ready(cmd, what);
    assert_eq!(
        ready["pid"].as_i64(),
        Some(1),
        "{what}: PID 1 inside: {ready}"
    );
    let unshare = guard.pid();
    let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
        .expect("children of unshare");
    let host_pid: i32 = children
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: unshare has no child"));
    let process = Process::attach(host_pid).expect("attach");
    assert_eq!(process.ns_pid(), Some(1), "{what}");
    assert!(process.in_other_pid_namespace());
    PidNsTarget {
        _guard: guard,
        host_pid,
        ready,
    }
}

fn pid_namespace_dump_case(interp: &Interp, script: &Path) -> String {
    let what = interp.label.clone();
    let t = start_in_pid_namespace(interp, script);
    let doc = dump_json(t.host_pid, &what);
    // The PID the user gave, not the namespace's 1.
    assert_eq!(doc["pid"].as_i64(), Some(i64::from(t.host_pid)), "{what}");
    assert_eq!(doc["python_version"], t.ready["version"], "{what}");
    let main = thread_in(&doc, "idle_loop");
    assert_eq!(
        main["frames"][0]["line"].as_i64(),
        Some(marker("# IDLE_LINE"))
    );
    assert_eq!(
        main["thread_id"].as_u64(),
        t.ready["main"]["ident"].as_u64(),
        "{what}"
    );
    let nap = thread_in(&doc, "nap");
    assert_eq!(
        nap["frames"][0]["line"].as_i64(),
        Some(marker("# NAP_LINE"))
    );
    assert_eq!(
        nap["thread_id"].as_u64(),
        t.ready["threads"]["napper"]["ident"].as_u64()
    );
    thread_in(&doc, "spin");
    format!("{what}: PID namespace, host PID {} (1 inside)", t.host_pid)
}

#[test]
fn a_target_in_its_own_pid_namespace() {
    let interps = require_all();
    let scratch = Scratch::new("pid-dump");
    let script = write_target(&scratch.0);
    for line in par_map(&interps, 2, |i| pid_namespace_dump_case(i, &script)) {
        println!("{line}");
    }
}

/// How the sampler should find a thread's scheduler state in a PID
/// namespace, at the library level: CPython's (namespace-local) TIDs go
/// through `Process::ns_tid_map()` to host TIDs, then to
/// `/proc/HOSTPID/task/HOSTTID/stat`. On ≤ 3.10 the TID offset inside
/// glibc's `struct pthread` must be learned from the namespace-local TIDs.
fn ns_tid_translation_case(interp: &Interp, script: &Path) -> String {
    let what = interp.label.clone();
    let t = start_in_pid_namespace(interp, script);
    let process = Process::attach(t.host_pid).expect("attach");
    let map = process.ns_tid_map().expect("ns tid map");
    assert!(!map.is_identity(), "{what}: {map:?}");
    assert_eq!(map.to_host(1), Some(t.host_pid), "{what}: the main thread");
    let host_tids = process.threads().expect("threads");
    assert_eq!(map.host_tids(), host_tids, "{what}");

    let interp_found = locate(&process).expect("locate");
    let mut reader = StackReader::new(&process, interp_found);
    reader.learn_pthread_tid_offset(&map.ns_tids(), process.ns_pid());
    let stacks = reader.read_all().expect("stacks");

    // Every Python thread's TID, as CPython stores it, is a namespace TID;
    // on 3.8+ the target reported its own (threading.get_native_id()).
    let mut by_leaf: BTreeMap<String, i32> = BTreeMap::new();
    for s in &stacks {
        let leaf = s
            .frames
            .first()
            .map(|f| f.name.to_string())
            .unwrap_or_default();
        let ns_tid = s
            .native_id
            .unwrap_or_else(|| panic!("{what}: no native id for {leaf}"));
        let host = map
            .to_host(ns_tid)
            .unwrap_or_else(|| panic!("{what}: {leaf}: ns TID {ns_tid} is not in {map:?}"));
        by_leaf.insert(leaf, host);
    }
    for (name, leaf) in [("spinner", "spin"), ("napper", "nap")] {
        let reported = t.ready["threads"][name]["native_id"].as_i64();
        let ns = by_leaf.get(leaf).and_then(|h| map.to_ns(*h)).map(i64::from);
        assert_eq!(ns, reported, "{what}: {name}");
    }
    assert_eq!(by_leaf.get("idle_loop"), Some(&t.host_pid), "{what}");

    // The spinning thread is runnable (`R`: on a CPU or in a run queue)
    // most of the time, the napper only as it wakes up. On a loaded machine
    // a waking thread waits in the run queue (`R` too), and the spinner
    // waits for the GIL the sleepers take (`S`): each thread's polled share
    // of `R` is held to the share of the time the kernel says it was
    // runnable (its schedstat; the thread found by its namespace TID in
    // `NSpid`, not through pyrometer's map), within 10 points. Reading the
    // other thread's state fails as long as their runnable shares are more
    // than 20 points apart (the matrix prints both).
    let host_of = |name: &str| {
        let ns = t.ready["threads"][name]["native_id"].as_i64().unwrap_or(-1) as i32;
        let host = load::host_tid_of_ns_tid(t.host_pid, ns)
            .unwrap_or_else(|| panic!("{what}: no thread of {} has NSpid {ns}", t.host_pid));
        assert_eq!(
            by_leaf.get(if name == "spinner" { "spin" } else { "nap" }),
            Some(&host),
            "{what}: {name}"
        );
        host
    };
    let (spin_host, nap_host) = (host_of("spinner"), host_of("napper"));
    let sched = |tid: i32| load::SchedStat::read(t.host_pid, tid).expect("schedstat");
    let (spin0, nap0) = (sched(spin_host), sched(nap_host));
    let mut stat = ThreadStatReader::new();
    let (mut spin_running, mut nap_running, mut polls) = (0, 0, 0);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) && polls < 200 {
        polls += 1;
        if stat.state(t.host_pid, by_leaf["spin"]) == SchedState::Running {
            spin_running += 1;
        }
        if stat.state(t.host_pid, by_leaf["nap"]) == SchedState::Running {
            nap_running += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = t0.elapsed();
    let spin_runnable = sched(spin_host).since(&spin0).runnable_share(wall);
    let nap_runnable = sched(nap_host).since(&nap0).runnable_share(wall);
    let share = |n: u32| f64::from(n) / f64::from(polls.max(1));
    let (spin_seen, nap_seen) = (share(spin_running), share(nap_running));
    assert!(
        spin_seen >= spin_runnable - 0.1,
        "{what}: spinner seen running at {spin_running}/{polls} polls; runnable {:.0} % of the time",
        100.0 * spin_runnable
    );
    assert!(
        nap_seen <= nap_runnable + 0.1,
        "{what}: napper seen running at {nap_running}/{polls} polls; runnable {:.0} % of the time",
        100.0 * nap_runnable
    );
    format!(
        "{what}: ns TIDs {:?} -> host {:?}; running at {polls} polls: spinner {spin_running} \
         (runnable {:.0} % of the time), napper {nap_running} (runnable {:.0} %)",
        map.ns_tids(),
        map.host_tids(),
        100.0 * spin_runnable,
        100.0 * nap_runnable
    )
}

#[test]
fn namespace_thread_ids_translate_to_host_thread_ids() {
    // 3.11+: CPython stores the TID itself (`native_thread_id`).
    let interps: Vec<Interp> = require_all()
        .into_iter()
        .filter(|i| i.minor() >= (3, 11))
        .collect();
    let scratch = Scratch::new("pid-tids");
    let script = write_target(&scratch.0);
    // One spinning target at a time: the CPU check needs a free core.
    for line in par_map(&interps, 1, |i| ns_tid_translation_case(i, &script)) {
        println!("{line}");
    }
}

#[test]
fn namespace_thread_ids_translate_to_host_thread_ids_before_3_11() {
    // <= 3.10: the TID is read from glibc's struct pthread, at an offset
    // learned from the namespace's TIDs.
    let interps: Vec<Interp> = require_all()
        .into_iter()
        .filter(|i| i.minor() <= (3, 10))
        .collect();
    let scratch = Scratch::new("pid-tids-old");
    let script = write_target(&scratch.0);
    for line in par_map(&interps, 1, |i| ns_tid_translation_case(i, &script)) {
        println!("{line}");
    }
}

/// `dump` in a PID namespace: threads' states come from the host's
/// `/proc/HOSTPID/task/HOSTTID/stat`, which needs the translation above in
/// the sampler (`Target`), and `native_id` is reported as the host TID.
fn pid_namespace_states_case(interp: &Interp, script: &Path) -> String {
    let what = interp.label.clone();
    let t = start_in_pid_namespace(interp, script);
    let process = Process::attach(t.host_pid).expect("attach");
    let map = process.ns_tid_map().expect("map");
    // The spinner may be preempted at one instant: a few tries.
    let mut last = Value::Null;
    for _ in 0..20 {
        let doc = dump_json(t.host_pid, &what);
        let spin = thread_in(&doc, "spin");
        let nap = thread_in(&doc, "nap");
        let main = thread_in(&doc, "idle_loop");
        assert_eq!(
            main["native_id"].as_i64(),
            Some(i64::from(t.host_pid)),
            "{what}"
        );
        let spin_ns = t.ready["threads"]["spinner"]["native_id"]
            .as_i64()
            .map(|n| n as i32);
        assert_eq!(
            spin["native_id"].as_i64().map(|n| n as i32),
            spin_ns.and_then(|n| map.to_host(n)),
            "{what}: native_id is the host TID"
        );
        // The sleeping threads wake briefly now and then (the main thread's
        // idle loop): a snapshot where one is momentarily on a CPU is
        // retried, like one where the spinner was preempted.
        if spin["active"] == true && nap["active"] == false && main["active"] == false {
            return format!("{what}: PID namespace thread states right");
        }
        last = doc;
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what}: never saw the spinner active and the sleepers idle at once: {last:#}");
}

#[test]
fn a_target_in_its_own_pid_namespace_has_the_right_thread_states() {
    let interps = require_all();
    let scratch = Scratch::new("pid-states");
    let script = write_target(&scratch.0);
    for line in par_map(&interps, 1, |i| pid_namespace_states_case(i, &script)) {
        println!("{line}");
    }
}
