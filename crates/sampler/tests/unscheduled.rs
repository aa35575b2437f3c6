//! Threads that have not been on a CPU since the last tick are reported
//! again from it, unread, on every interpreter of the matrix
//! (pyrometer_testsupport::require_all).
//!
//! The checks count ticks, not time: whatever the load of the machine, a
//! thread blocked with nothing to wake it is never scheduled, so only the
//! forced full read every 100 ms (counted from the elapsed time) may read
//! it again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pyrometer_sampler::{Sample, Target, ThreadState};
use pyrometer_testsupport::{par_map, require_all, spawn_python, Interp};

/// A target is read in full at least this often (the engine's bound).
const FULL_READ_EVERY: Duration = Duration::from_millis(100);
/// Ticks of each measured stretch.
const TICKS: u32 = 300;
/// Idle threads of the busy target.
const IDLE_THREADS: usize = 50;

fn target_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/targets")
        .join(name)
}

fn attach(pid: i32) -> Target {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Target::attach(pid) {
            Ok(t) => return t,
            Err(e) if Instant::now() > deadline => panic!("cannot attach to {pid}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The name of the innermost frame of the target script itself (not of
/// the library it calls) of the thread `native_id` in `samples`.
fn innermost(samples: &[Sample], native_id: i32) -> Option<String> {
    samples
        .iter()
        .find(|s| s.native_id == Some(native_id))
        .and_then(|s| {
            s.frames
                .iter()
                .find(|f| f.filename.contains("tests/targets/"))
        })
        .map(|f| f.name.to_string())
}

/// Sample until `cond` holds for a tick's samples, within a deadline.
fn sample_until(target: &mut Target, mut cond: impl FnMut(&[Sample]) -> bool) -> bool {
    let t0 = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(samples) = target.sample(t0.elapsed()) {
            if cond(&samples) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Most ticks of a stretch of `elapsed` that may read the target although
/// nothing ran: one forced full read per 100 ms, plus the one the stretch
/// starts in.
fn forced_reads(elapsed: Duration) -> u64 {
    (elapsed.as_millis() / FULL_READ_EVERY.as_millis()) as u64 + 2
}

fn check_one_sleeper(interp: &Interp) -> Vec<String> {
    let mut failures = Vec::new();
    let (dir, fifo) = make_fifo(interp, "sleeper");
    let (child, _) = spawn_python(
        interp,
        &target_script("one_sleeper.py"),
        &[fifo.to_str().unwrap()],
    );
    let pid = child.pid();
    let mut target = attach(pid);
    target.set_idle_stacks(true);
    // In first_nap and asleep: its frame is pushed before it blocks in
    // `open` (a loaded machine shows it on a CPU, GIL released, a while).
    if !sample_until(&mut target, |s| {
        innermost(s, pid).as_deref() == Some("first_nap")
            && s.first().is_some_and(|t| t.state == ThreadState::Idle)
    }) {
        let last = target.sample(Duration::ZERO);
        return vec![format!(
            "never saw the thread asleep in first_nap: {last:?}"
        )];
    }
    // Two ticks: the first reading of the thread's schedstat is the
    // baseline of the next.
    for _ in 0..2 {
        let _ = target.sample(Duration::ZERO);
    }
    let (stats0, t0) = (target.stats.clone(), Instant::now());
    let mut unread_with_reads = 0;
    let mut wrong = Vec::new();
    for i in 0..TICKS {
        let (cache, unread) = (target.cache_stats(), target.stats.unread_ticks);
        match target.sample(t0.elapsed()) {
            Ok(samples) => {
                let name = innermost(&samples, pid);
                let state = samples.first().map(|s| s.state);
                if samples.len() != 1
                    || name.as_deref() != Some("first_nap")
                    || state != Some(ThreadState::Idle)
                {
                    wrong.push(format!(
                        "tick {i}: {name:?} {state:?} ({} samples)",
                        samples.len()
                    ));
                }
            }
            Err(e) => wrong.push(format!("tick {i}: {e}")),
        }
        if target.stats.unread_ticks > unread && target.cache_stats() != cache {
            unread_with_reads += 1;
        }
        // Over several full-read periods.
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = t0.elapsed();
    let (ticks, unread) = (
        target.stats.ticks - stats0.ticks,
        target.stats.unread_ticks - stats0.unread_ticks,
    );
    let reused = target.stats.reused_samples - stats0.reused_samples;
    println!(
        "{}: one sleeper: {ticks} ticks in {:.0} ms, {unread} unread, {reused} samples reused",
        interp.label,
        elapsed.as_secs_f64() * 1e3
    );
    if !wrong.is_empty() {
        failures.push(format!("wrong samples while asleep: {wrong:?}"));
    }
    if unread_with_reads > 0 {
        failures.push(format!(
            "{unread_with_reads} unread ticks moved the page cache counters"
        ));
    }
    // The forced full reads happen: one per 100 ms (ticks may come late on a
    // loaded machine, hence the slack).
    let reads = ticks - unread;
    if elapsed >= 3 * FULL_READ_EVERY && reads < (elapsed.as_millis() / 200) as u64 {
        failures.push(format!("{reads} full reads in {elapsed:?}"));
    }
    if ticks != u64::from(TICKS) || unread + forced_reads(elapsed) < ticks || reused != unread {
        failures.push(format!(
            "{unread} of {ticks} ticks unread ({reused} reused) in {elapsed:?}: \
             at most {} may read a thread that never runs",
            forced_reads(elapsed)
        ));
    }
    // Woken, it calls another function: the next ticks see it. The writer
    // stays open, so that its second read blocks.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::io::Write::write_all(&mut writer, b"x").unwrap();
    if !sample_until(&mut target, |s| {
        innermost(s, pid).as_deref() == Some("second_nap")
    }) {
        failures.push("never saw the thread in second_nap once woken".into());
    }
    // Then asleep again (it blocks at once): reused again, the new stack.
    // (It may take a while to block on a loaded machine: ticks until an
    // unread one, with a deadline.)
    let unread_before = target.stats.unread_ticks;
    let deadline = Instant::now() + Duration::from_secs(10);
    while target.stats.unread_ticks <= unread_before && Instant::now() < deadline {
        let name = target
            .sample(Duration::ZERO)
            .ok()
            .and_then(|s| innermost(&s, pid));
        if name.as_deref() != Some("second_nap") {
            failures.push(format!("after waking: {name:?}, not second_nap"));
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if target.stats.unread_ticks <= unread_before {
        failures.push("second_nap was never reused".into());
    }
    drop(child);
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
    failures
}

/// A FIFO in a fresh directory (removed with it by the caller).
fn make_fifo(interp: &Interp, name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "pyrometer-unscheduled-{name}-{}-{}",
        std::process::id(),
        interp.label
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("wake");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    (dir, fifo)
}

fn check_ending_thread(interp: &Interp) -> Vec<String> {
    let mut failures = Vec::new();
    let (dir, fifo) = make_fifo(interp, "ending");
    let (child, _) = spawn_python(
        interp,
        &target_script("ending_thread.py"),
        &[fifo.to_str().unwrap()],
    );
    let pid = child.pid();
    let mut target = attach(pid);
    target.set_idle_stacks(true);
    let has_worker = |s: &[Sample]| {
        s.iter()
            .any(|x| x.frames.iter().any(|f| &*f.name == "ending_worker"))
    };
    if !sample_until(&mut target, |s| s.len() == 2 && has_worker(s)) {
        return vec!["never saw both threads asleep".into()];
    }
    // Both asleep and reused, the whole process unread.
    let unread_before = target.stats.unread_ticks;
    for _ in 0..20 {
        let _ = target.sample(Duration::ZERO);
    }
    if target.stats.unread_ticks <= unread_before {
        failures.push("two sleeping threads were read on every tick".into());
    }
    // The worker gets its byte and ends; the main thread does not run.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::io::Write::write_all(&mut writer, b"x").unwrap();
    drop(writer);
    let gone = sample_until(&mut target, |s| s.len() == 1 && !has_worker(s));
    if !gone {
        failures.push("the ended thread was still reported".into());
    }
    for i in 0..50 {
        match target.sample(Duration::ZERO) {
            Ok(s) if s.len() == 1 && innermost(&s, pid).as_deref() == Some("main_wait") => {}
            other => {
                failures.push(format!("tick {i} after the thread ended: {other:?}"));
                break;
            }
        }
    }
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    failures
}

fn check_busy_and_idle(interp: &Interp) -> Vec<String> {
    let mut failures = Vec::new();
    let n = IDLE_THREADS.to_string();
    let (child, _) = spawn_python(interp, &target_script("busy_and_idle.py"), &[&n]);
    let pid = child.pid();
    let mut target = attach(pid);
    target.set_idle_stacks(true);
    let parked = |s: &[Sample]| {
        s.len() == IDLE_THREADS + 1
            && s.iter()
                .filter(|x| x.native_id != Some(pid))
                .all(|x| x.frames.iter().any(|f| &*f.name == "idle_worker"))
    };
    if !sample_until(&mut target, parked) {
        return vec![format!("never saw {IDLE_THREADS} idle workers parked")];
    }
    for _ in 0..2 {
        let _ = target.sample(Duration::ZERO);
    }
    let (stats0, t0) = (target.stats.clone(), Instant::now());
    let mut problems = Vec::new();
    let mut busy_seen_spinning = 0;
    for i in 0..TICKS {
        let reused_before = target.stats.reused_samples;
        let samples = match target.sample(t0.elapsed()) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("tick {i}: {e}"));
                continue;
            }
        };
        let reused = target.stats.reused_samples - reused_before;
        let busy = samples.iter().filter(|s| s.native_id == Some(pid)).count();
        let idle: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.native_id != Some(pid))
            .collect();
        if busy != 1 {
            problems.push(format!("tick {i}: the busy thread sampled {busy} times"));
        }
        if reused > IDLE_THREADS as u64 {
            problems.push(format!("tick {i}: {reused} reused: the busy thread too"));
        }
        if idle.len() != IDLE_THREADS {
            problems.push(format!("tick {i}: {} idle threads", idle.len()));
        }
        if let Some(s) = idle.iter().find(|s| s.state.is_active()) {
            problems.push(format!(
                "tick {i}: idle thread {:?} counted as {:?}",
                s.native_id, s.state
            ));
        }
        if let Some(s) = idle
            .iter()
            .find(|s| !s.frames.iter().any(|f| &*f.name == "idle_worker"))
        {
            problems.push(format!(
                "tick {i}: idle thread {:?} lost its stack",
                s.native_id
            ));
        }
        if innermost(&samples, pid).as_deref() == Some("spin") {
            busy_seen_spinning += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let elapsed = t0.elapsed();
    let ticks = target.stats.ticks - stats0.ticks;
    let reused = target.stats.reused_samples - stats0.reused_samples;
    let unread = target.stats.unread_ticks - stats0.unread_ticks;
    println!(
        "{}: busy + {IDLE_THREADS} idle: {ticks} ticks in {:.0} ms, {reused} samples reused, \
         {unread} unread ticks, busy thread in spin at {busy_seen_spinning}",
        interp.label,
        elapsed.as_secs_f64() * 1e3
    );
    problems.truncate(10);
    if !problems.is_empty() {
        failures.push(format!("{problems:?}"));
    }
    // Every tick reads the busy thread; the idle ones are reused except at
    // the forced full reads.
    let least = (ticks.saturating_sub(forced_reads(elapsed))) * IDLE_THREADS as u64;
    if reused < least {
        failures.push(format!(
            "{reused} idle samples reused in {ticks} ticks over {elapsed:?}, expected at least {least}"
        ));
    }
    if unread != 0 {
        failures.push(format!("{unread} ticks left the busy thread unread"));
    }
    // The busy thread's stack is read every tick: mostly seen in spin (its
    // loop is around it); none if its reads were reused.
    if busy_seen_spinning < ticks / 4 {
        failures.push(format!(
            "the busy thread was seen in spin at {busy_seen_spinning} of {ticks} ticks"
        ));
    }
    drop(child);
    failures
}

fn report(what: &str, interps: &[Interp], rows: Vec<Vec<String>>) {
    let failed: Vec<String> = interps
        .iter()
        .zip(rows)
        .filter(|(_, f)| !f.is_empty())
        .map(|(i, f)| format!("{}: {}", i.label, f.join("; ")))
        .collect();
    assert!(failed.is_empty(), "{what}:\n{}", failed.join("\n"));
}

#[test]
fn a_sleeping_thread_is_not_read_until_it_runs() {
    let interps = require_all();
    let rows = par_map(&interps, 2, check_one_sleeper);
    report("one sleeping thread", &interps, rows);
}

#[test]
fn a_thread_that_ends_while_nothing_else_runs_is_dropped() {
    let interps = require_all();
    let rows = par_map(&interps, 2, check_ending_thread);
    report("a thread ending", &interps, rows);
}

#[test]
fn idle_threads_are_reused_while_the_busy_one_is_read() {
    let interps = require_all();
    // Each target spins a core: one at a time.
    let rows = par_map(&interps, 1, check_busy_and_idle);
    report("one busy thread and 50 idle ones", &interps, rows);
}
