//! The preloaded hook against real processes: it reports sampled
//! allocations and frees of a Python target, never harms a target (no
//! consumer, a non-Python program, forks, thread churn), and stops
//! sampling when pyrometer is gone. Without a walk recipe (no pyrometer to
//! locate the interpreter here) Python samples say so; non-Python programs
//! say they are not Python. The in-process walk itself is checked end to
//! end in crates/cli/tests/memory_launch.rs.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyrometer_memhook::{
    install_library, sample_weight, CapturedStack, EventKind, SharedRing, ENV_RING,
};
use pyrometer_testsupport::{require_all, run_with_timeout};

const MEAN: u64 = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(120);

fn hooked(program: &str, args: &[&str], ring: &SharedRing, lib: &PathBuf) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("LD_PRELOAD", lib)
        .env("PYTHONMALLOC", "malloc")
        .env(ENV_RING, ring.path())
        .stdin(Stdio::null());
    cmd
}

/// Everything read from the ring by a consumer thread.
#[derive(Default)]
struct Seen {
    allocs: Vec<(i32, i32, u64, u64)>,
    stacks: Vec<CapturedStack>,
    frees: Vec<(i32, u64)>,
    /// Allocations (size) and frees (address) in ring order.
    events: Vec<Ordered>,
}

enum Ordered {
    Alloc(u64),
    Free(u64),
}

fn consume(mut ring: SharedRing, stop: Arc<AtomicBool>) -> (Seen, pyrometer_memhook::HookStats) {
    let mut seen = Seen::default();
    loop {
        ring.heartbeat();
        while let Some(e) = ring.next_event() {
            match e.kind {
                EventKind::Alloc => {
                    seen.events.push(Ordered::Alloc(e.size));
                    seen.allocs.push((e.pid, e.tid, e.addr, e.size));
                    seen.stacks.push(e.stack);
                }
                EventKind::Free => {
                    seen.events.push(Ordered::Free(e.addr));
                    seen.frees.push((e.pid, e.addr));
                }
            }
        }
        if stop.load(Ordering::SeqCst) {
            // Drain what is left.
            while let Some(e) = ring.next_event() {
                match e.kind {
                    EventKind::Alloc => {
                        seen.events.push(Ordered::Alloc(e.size));
                        seen.allocs.push((e.pid, e.tid, e.addr, e.size));
                        seen.stacks.push(e.stack);
                    }
                    EventKind::Free => {
                        seen.events.push(Ordered::Free(e.addr));
                        seen.frees.push((e.pid, e.addr));
                    }
                }
            }
            return (seen, ring.stats());
        }
        ring.wait(Duration::from_millis(5));
    }
}

fn run_consumed(
    make: impl FnOnce(&SharedRing) -> Command,
) -> (Output, Seen, pyrometer_memhook::HookStats) {
    let ring = SharedRing::create(MEAN).expect("ring");
    let mut cmd = make(&ring);
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let stop = stop.clone();
        std::thread::spawn(move || consume(ring, stop))
    };
    let out = run_with_timeout(&mut cmd, TIMEOUT);
    stop.store(true, Ordering::SeqCst);
    let (seen, stats) = consumer.join().expect("consumer");
    let out = out.expect("the hooked command finishes");
    (out, seen, stats)
}

fn python() -> PathBuf {
    require_all()
        .into_iter()
        .max_by_key(|i| i.version)
        .expect("an interpreter")
        .path
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "target failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "target wrote errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 64 MiB allocated in 1 MiB blocks, then freed: estimated bytes within
/// 25 % (about 1000 samples), and most sampled blocks reported freed.
#[test]
fn reports_sampled_allocations_and_frees_on_every_interpreter() {
    let lib = install_library().expect("library");
    for interp in require_all() {
        let script =
            "blocks = [bytearray(1 << 20) for _ in range(64)]\ndel blocks\nprint('done')\n";
        let (out, seen, stats) =
            run_consumed(|ring| hooked(interp.path.to_str().unwrap(), &["-c", script], ring, &lib));
        assert_ok(&out);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "done");
        let pid_of_run = seen
            .allocs
            .first()
            .map(|a| a.0)
            .expect("allocations reported");
        let big: f64 = seen
            .allocs
            .iter()
            .filter(|a| a.3 >= 1 << 20)
            .map(|a| sample_weight(a.3, MEAN))
            .sum();
        let expected = 64.0 * (1 << 20) as f64;
        assert!(
            (big - expected).abs() < 0.25 * expected,
            "{}: estimated {big} bytes in 1 MiB blocks, expected {expected}",
            interp.label
        );
        let sampled: HashSet<(i32, u64)> = seen
            .allocs
            .iter()
            .filter(|a| a.3 >= 1 << 20)
            .map(|a| (a.0, a.2))
            .collect();
        let freed = seen.frees.iter().filter(|f| sampled.contains(f)).count();
        assert!(
            freed * 10 >= sampled.len() * 9,
            "{}: {freed} of {} sampled 1 MiB blocks reported freed",
            interp.label,
            sampled.len()
        );
        assert!(seen.allocs.iter().all(|a| a.0 == pid_of_run));
        assert_eq!(stats.hooked_processes, 1, "{}", interp.label);
        // Nobody wrote a walk recipe: every sample says so, and is counted.
        assert!(
            seen.stacks.iter().all(|s| *s == CapturedStack::NoRecipe),
            "{}: {:?}",
            interp.label,
            seen.stacks.iter().find(|s| **s != CapturedStack::NoRecipe)
        );
        assert_eq!(
            stats.no_recipe,
            seen.allocs.len() as u64,
            "{}",
            interp.label
        );
    }
}

/// Nobody reads the ring (pyrometer was killed): the target runs to the end,
/// quickly, without errors; the full ring only drops events.
#[test]
fn target_is_unharmed_when_nobody_reads_the_ring() {
    let lib = install_library().expect("library");
    let ring = SharedRing::create(4096).expect("ring");
    let py = python();
    let script = "import time\nt=time.monotonic()\nfor i in range(20000):\n    b = bytearray(65536)\nprint(round(time.monotonic()-t, 3))\n";
    let mut cmd = hooked(py.to_str().unwrap(), &["-c", script], &ring, &lib);
    let out = run_with_timeout(&mut cmd, TIMEOUT).expect("finishes");
    assert_ok(&out);
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(secs < 30.0, "the loop took {secs} s");
}

/// A program that is not Python, with forks and an exec chain, gives the
/// same output with and without the hook.
#[test]
fn non_python_programs_are_unharmed() {
    let lib = install_library().expect("library");
    let script = "for i in 1 2 3 4 5 6 7 8; do (seq 1 20000 | sort -r | head -n 3) & done; wait; ls / | wc -l; exec env -i PATH=/usr/bin:/bin sh -c 'echo exec-ok'";
    let plain = run_with_timeout(Command::new("sh").args(["-c", script]), TIMEOUT).expect("plain");
    let (out, seen, stats) = run_consumed(|ring| hooked("sh", &["-c", script], ring, &lib));
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&plain.stdout)
    );
    // sh, its subshells and the programs they exec'd all mapped the ring
    // (env -i drops the variables: the last sh is not hooked).
    assert!(stats.hooked_processes >= 8, "{stats:?}");
    assert!(!seen.stacks.is_empty(), "no sampled allocations");
    assert!(
        seen.stacks.iter().all(|s| *s == CapturedStack::NotPython),
        "{:?}",
        seen.stacks.iter().find(|s| **s != CapturedStack::NotPython)
    );
}

/// Forked children that allocate are each reported with their own pid, and
/// the parent keeps working; 200 short-lived children.
#[test]
fn forked_children_are_covered() {
    let lib = install_library().expect("library");
    let py = python();
    let script = r#"
import os
pids = []
for i in range(200):
    pid = os.fork()
    if pid == 0:
        blocks = [bytearray(1 << 20) for _ in range(2)]
        os._exit(0)
    pids.append(pid)
bad = 0
for pid in pids:
    _, status = os.waitpid(pid, 0)
    bad += status != 0
print(bad)
"#;
    let (out, seen, stats) =
        run_consumed(|ring| hooked(py.to_str().unwrap(), &["-c", script], ring, &lib));
    assert_ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    let pids: HashSet<i32> = seen.allocs.iter().map(|a| a.0).collect();
    // 2 MiB each at one sample per 64 KiB: every child is sampled.
    assert!(pids.len() >= 190, "{} processes reported", pids.len());
    assert!(stats.hooked_processes >= 201, "{stats:?}");
}

/// Threads created and destroyed constantly, all allocating.
#[test]
fn thread_churn_is_safe() {
    let lib = install_library().expect("library");
    let py = python();
    let script = r#"
import threading
def work():
    for _ in range(20):
        b = bytearray(100000)
for round in range(50):
    ts = [threading.Thread(target=work) for _ in range(8)]
    for t in ts: t.start()
    for t in ts: t.join()
print("ok")
"#;
    let (out, seen, _) =
        run_consumed(|ring| hooked(py.to_str().unwrap(), &["-c", script], ring, &lib));
    assert_ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let mut per_tid: HashMap<i32, usize> = HashMap::new();
    for a in &seen.allocs {
        *per_tid.entry(a.1).or_default() += 1;
    }
    assert!(per_tid.len() >= 100, "{} threads reported", per_tid.len());
}

/// A ring file left by a killed pyrometer (its PID gone) is removed when
/// the next ring is created; a live process's file is kept.
#[test]
fn stale_ring_files_are_removed() {
    let mut child = Command::new("true").spawn().expect("true");
    let dead = child.id();
    child.wait().expect("reaped");
    let ring = SharedRing::create(MEAN).expect("ring");
    let dir = ring.path().parent().expect("dir").to_path_buf();
    drop(ring);
    let stale = dir.join(format!("pyrometer-memhook-{dead}-1"));
    let live = dir.join(format!("pyrometer-memhook-{}-2", std::process::id()));
    std::fs::write(&stale, b"x").unwrap();
    std::fs::write(&live, b"x").unwrap();
    let ring = SharedRing::create(MEAN).expect("ring");
    assert!(!stale.exists(), "{} is still there", stale.display());
    assert!(live.exists());
    std::fs::remove_file(&live).unwrap();
    drop(ring);
}

/// A realloc that fails leaves its block in place: the hook must not report
/// it freed then. Sixteen sampled 1 MiB blocks each fail to grow to 128 TiB (more than the address space);
/// their frees must come only after the marker allocation that follows,
/// when the blocks are really freed.
#[test]
fn failed_realloc_keeps_the_block() {
    let lib = install_library().expect("library");
    let py = python();
    let script = r#"
blocks = [bytearray(1 << 20) for _ in range(16)]
failed = 0
for b in blocks:
    try:
        b *= 1 << 27
    except MemoryError:
        failed += 1
marker = bytearray(3 * (1 << 20) + 7)
del blocks
print(failed)
"#;
    let (out, seen, _) =
        run_consumed(|ring| hooked(py.to_str().unwrap(), &["-c", script], ring, &lib));
    assert_ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "16");
    let blocks: HashSet<u64> = seen
        .allocs
        .iter()
        .filter(|a| a.3 >= 1 << 20 && a.3 < 2 << 20)
        .map(|a| a.2)
        .collect();
    assert!(blocks.len() >= 12, "{} 1 MiB blocks sampled", blocks.len());
    let marker_at = seen
        .events
        .iter()
        // bytearray asks for one byte more (its NUL).
        .position(|e| matches!(e, Ordered::Alloc(size) if (3 << 20) + 7 <= *size && *size <= (3 << 20) + 64))
        .expect("the marker allocation was sampled");
    let early: Vec<u64> = seen.events[..marker_at]
        .iter()
        .filter_map(|e| match e {
            Ordered::Free(addr) if blocks.contains(addr) => Some(*addr),
            _ => None,
        })
        .collect();
    assert!(
        early.is_empty(),
        "blocks reported freed by a failed realloc: {early:x?}"
    );
    let late = seen.events[marker_at..]
        .iter()
        .filter(|e| matches!(e, Ordered::Free(addr) if blocks.contains(addr)))
        .count();
    assert!(
        late * 10 >= blocks.len() * 9,
        "{late} of {} blocks freed at del",
        blocks.len()
    );
}
