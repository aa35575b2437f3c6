//! Faults while recording, against real processes: the target exits, is
//! SIGKILLed, execs a non-Python program, is SIGSTOPped, churns threads or
//! forks a thousand children; pyrometer itself gets SIGINT, SIGTERM or a
//! closed pipe. Every case: no panic, the documented exit code, the output
//! written and complete, and the summary says why recording stopped.
//!
//! The target is `targets/faults.py` (its modes are documented there), run
//! with one interpreter: what is under test here is pyrometer's handling of
//! processes, which does not depend on the CPython version.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Longest a recording that should end by itself may take past its due time
/// on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(15);

fn start(interp: &Interp, args: &[&str]) -> ChildGuard {
    let (guard, _) = start_target(interp, "faults.py", args).unwrap_or_else(|e| panic!("{e}"));
    guard
}

/// Folded stacks that parse, with at least one sample of `function`.
fn check_folded(what: &str, path: &std::path::Path, function: &str) -> Vec<(Vec<String>, u64)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{what}: no output at {}: {e}", path.display()));
    let folded = parse_folded(&text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
    let hits: u64 = folded
        .iter()
        .filter(|(frames, _)| frames.iter().any(|f| folded_name(f) == function))
        .map(|(_, n)| n)
        .sum();
    assert!(hits > 0, "{what}: no sample in {function}; output:\n{text}");
    folded
}

#[test]
fn target_exits_is_killed_or_execs_mid_recording() {
    let interp = one_interp();
    let scratch = Scratch::new("faults-exit");
    let _cpu = cpu_lock();
    // (mode args, what the summary must say, leaf function seen)
    let cases: [(&str, &[&str], &str); 3] = [
        ("exits", &["exit", "3"], "stopped: target exited"),
        ("SIGKILLed", &["spin"], "stopped: target exited"),
        (
            "execs /bin/sleep",
            &["exec", "3"],
            "stopped: the target replaced itself with another program (exec)",
        ),
    ];
    for (what, args, stopped) in cases {
        let mut target = start(&interp, args);
        let pid = target.pid().to_string();
        let out = scratch.file(&format!("{}.txt", args[0]));
        let t0 = Instant::now();
        let rec = Background::start(&[
            "record",
            "--pid",
            &pid,
            "-d",
            "60",
            "-f",
            "raw",
            "-o",
            out.to_str().unwrap(),
        ]);
        if args[0] == "spin" {
            // Let it collect samples, then kill the target under it.
            wait_sampling(rec.pid()).unwrap_or_else(|e| panic!("{e}"));
            // SAFETY: kill(2) of the target this test started.
            unsafe { libc::kill(target.pid(), libc::SIGKILL) };
            let _ = target.wait_timeout(Duration::from_secs(5));
        }
        let f = rec
            .wait(Duration::from_secs(3) + SLACK)
            .unwrap_or_else(|e| panic!("target {what}: {e}"));
        println!(
            "target {what}: pyrometer ended after {:.2} s, {}: {}",
            t0.elapsed().as_secs_f64(),
            f.status,
            f.stderr.trim()
        );
        assert_clean(&format!("target {what}"), &f, 0);
        assert!(
            f.stderr.contains(stopped),
            "target {what}: the summary does not say {stopped:?}: {}",
            f.stderr
        );
        check_folded(&format!("target {what}"), &out, "spin_here");
        if args[0] == "exec" {
            // The exec'd program is still running: pyrometer stopped on the
            // exec, not on an exit.
            let exe = exe_name(target.pid());
            assert!(
                exe.as_deref() == Some("sleep"),
                "the target should be running sleep now, not {exe:?}"
            );
        }
    }
}

#[test]
fn launched_command_that_exits_or_is_killed() {
    let interp = one_interp();
    let scratch = Scratch::new("faults-launch");
    let _cpu = cpu_lock();
    let out = scratch.file("launch.txt");
    let script = target("faults.py");
    let f = Background::start(&[
        "record",
        "-d",
        "60",
        "-f",
        "raw",
        "-o",
        out.to_str().unwrap(),
        "--",
        interp.path.to_str().unwrap(),
        script.to_str().unwrap(),
        "exit",
        "3",
    ])
    .wait(Duration::from_secs(3) + SLACK)
    .unwrap_or_else(|e| panic!("launched target exits: {e}"));
    println!("launched target exits: {}: {}", f.status, f.stderr.trim());
    assert_clean("launched target exits", &f, 0);
    assert!(f.stderr.contains("stopped: target exited"), "{}", f.stderr);
    check_folded("launched target exits", &out, "spin_here");

    // Ctrl-C (SIGINT to pyrometer alone): the output is written and the
    // command pyrometer started is terminated, as documented.
    let marker = scratch.file("pid");
    let code = format!(
        "import os\nopen({:?}, 'w').write(str(os.getpid()))\nwhile True: pass",
        marker.display().to_string()
    );
    let rec = Background::start(&[
        "record",
        "-f",
        "raw",
        "-o",
        out.to_str().unwrap(),
        "--",
        interp.path.to_str().unwrap(),
        "-c",
        &code,
    ]);
    let t0 = Instant::now();
    let child = loop {
        if let Some(pid) = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break pid;
        }
        assert!(t0.elapsed() < SLACK, "the launched command never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    wait_sampling(rec.pid()).unwrap_or_else(|e| panic!("{e}"));
    rec.signal(libc::SIGINT);
    let f = rec
        .wait(SLACK)
        .unwrap_or_else(|e| panic!("launched, Ctrl-C: {e}"));
    println!("launched, Ctrl-C: {}: {}", f.status, f.stderr.trim());
    assert_clean("launched, Ctrl-C", &f, 0);
    assert!(f.stderr.contains("stopped: interrupted"), "{}", f.stderr);
    let text = std::fs::read_to_string(&out).expect("output after Ctrl-C");
    let folded = parse_folded(&text).unwrap_or_else(|e| panic!("launched, Ctrl-C: {e}"));
    assert!(!folded.is_empty(), "launched, Ctrl-C: empty profile");
    assert!(
        !std::path::Path::new(&format!("/proc/{child}")).exists(),
        "the launched command {child} still runs after pyrometer ended"
    );
}

#[test]
fn stopped_target_does_not_hang_pyrometer_and_stays_stopped() {
    let interp = one_interp();
    let scratch = Scratch::new("faults-sigstop");
    let _cpu = cpu_lock();
    let target = start(&interp, &["spin"]);
    let pid = target.pid();
    // Progress lines prove the target runs before the stop.
    target
        .next_line(Duration::from_secs(10))
        .expect("a progress line");
    // SAFETY: kill(2) of the target this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let t0 = Instant::now();
    while proc_state(pid) != Some('T') {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no stop after SIGSTOP"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid_s = pid.to_string();
    for extra in [&[][..], &["--blocking"][..]] {
        let what = format!("record {extra:?} of a stopped target");
        let out = scratch.file("stopped.txt");
        let mut args = vec![
            "record",
            "--pid",
            &pid_s,
            "-d",
            "2",
            "--idle",
            "-f",
            "raw",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let t0 = Instant::now();
        let f = Background::start(&args)
            .wait(Duration::from_secs(2) + SLACK)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let took = t0.elapsed();
        println!(
            "{what}: {:.2} s, {}: {}",
            took.as_secs_f64(),
            f.status,
            f.stderr.trim()
        );
        assert_clean(&what, &f, 0);
        assert!(
            f.stderr.contains("stopped: duration"),
            "{what}: it should run for its whole -d: {}",
            f.stderr
        );
        assert!(
            f.stderr.contains("idle 100.0 %"),
            "{what}: a stopped target's samples should all be idle: {}",
            f.stderr
        );
        check_folded(&what, &out, "spin_here");
        assert_eq!(
            proc_state(pid),
            Some('T'),
            "{what}: the target was not left stopped"
        );
    }
    // dump too, then check that nothing resumed it: no progress line comes.
    let f = Background::start(&["dump", "--pid", &pid_s, "--blocking"])
        .wait(SLACK)
        .unwrap_or_else(|e| panic!("dump --blocking of a stopped target: {e}"));
    assert_clean("dump --blocking of a stopped target", &f, 0);
    assert!(f.stdout.contains("spin_here"), "{}", f.stdout);
    // Drain what it printed before the stop, then expect silence.
    while target.next_line(Duration::from_millis(200)).is_ok() {}
    assert!(
        target.next_line(Duration::from_millis(500)).is_err(),
        "the stopped target printed progress: pyrometer resumed it"
    );
    assert_eq!(proc_state(pid), Some('T'), "the target was resumed");
    // It resumes when we say so.
    // SAFETY: kill(2) of the target this test started.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    target
        .next_line(Duration::from_secs(10))
        .expect("progress after SIGCONT");

    // Stopped in the middle of a recording: it keeps sampling (idle) and
    // ends on time, and the target stays stopped after it.
    let out = scratch.file("stopped-mid.txt");
    let t0 = Instant::now();
    let rec = Background::start(&[
        "record",
        "--pid",
        &pid_s,
        "-d",
        "3",
        "--idle",
        "-f",
        "raw",
        "-o",
        out.to_str().unwrap(),
    ]);
    wait_sampling(rec.pid()).unwrap_or_else(|e| panic!("{e}"));
    // SAFETY: kill(2) of the target this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let f = rec
        .wait(Duration::from_secs(3) + SLACK)
        .unwrap_or_else(|e| panic!("target stopped mid-recording: {e}"));
    println!(
        "target stopped mid-recording: {:.2} s, {}: {}",
        t0.elapsed().as_secs_f64(),
        f.status,
        f.stderr.trim()
    );
    assert_clean("target stopped mid-recording", &f, 0);
    assert!(f.stderr.contains("stopped: duration"), "{}", f.stderr);
    assert!(
        f.stderr.contains("python ") && f.stderr.contains("idle "),
        "running then stopped: both python and idle samples expected: {}",
        f.stderr
    );
    check_folded("target stopped mid-recording", &out, "spin_here");
    assert_eq!(proc_state(pid), Some('T'), "the target was resumed");
    // SAFETY: kill(2) of the target this test started.
    unsafe { libc::kill(pid, libc::SIGCONT) };
}

#[test]
fn thread_created_and_destroyed_every_millisecond() {
    let interp = one_interp();
    let scratch = Scratch::new("faults-churn");
    let _cpu = cpu_lock();
    let _target = start(&interp, &["churn", "60"]);
    let pid = _target.pid().to_string();
    let out = scratch.file("churn.txt");
    let run = Background::start(&[
        "record",
        "--pid",
        &pid,
        "-r",
        "1000",
        "-d",
        "4",
        "--idle",
        "--threads",
        "-f",
        "raw",
        "-o",
        out.to_str().unwrap(),
    ]);
    // Threads start and end all the time meanwhile: pyrometer's open files
    // (per-thread scheduler state) must not grow with them. Counted after
    // the first second (attached, a few ended threads' files kept) and at
    // the end.
    let fds = format!("/proc/{}/fd", run.pid());
    let count = || std::fs::read_dir(&fds).map(|d| d.count()).unwrap_or(0);
    std::thread::sleep(Duration::from_millis(1500));
    let fds_early = count();
    std::thread::sleep(Duration::from_millis(2000));
    let fds_late = count();
    let f = run
        .wait(Duration::from_secs(4) + SLACK)
        .unwrap_or_else(|e| panic!("thread churn: {e}"));
    println!(
        "thread churn: pyrometer had {fds_early} files open after 1.5 s, {fds_late} after 3.5 s"
    );
    assert!(
        // Files of up to 16 ended threads are kept (wchan, stat and
        // schedstat each): the bound is 48 more, whenever it is reached.
        fds_early > 0 && fds_late <= fds_early + 64,
        "pyrometer's open files grew from {fds_early} to {fds_late} while threads churned"
    );
    println!("thread churn: {}: {}", f.status, f.stderr.trim());
    assert_clean("thread churn", &f, 0);
    let folded = check_folded("thread churn", &out, "churn");
    let (samples, errors, torn) = summary_counts(&f.stderr).expect("summary counts");
    // The short-lived threads were sampled for real, each lifetime under a
    // root of its own (a new thread reuses the last one's pthread, and so
    // its ident, but not its OS thread id).
    let short_lived: u64 = folded
        .iter()
        .filter(|(frames, _)| frames.first().is_some_and(|t| !t.contains("MainThread")))
        .map(|(_, n)| n)
        .sum();
    let roots: std::collections::HashSet<&str> = folded
        .iter()
        .filter_map(|(frames, _)| frames.first().map(String::as_str))
        .filter(|t| !t.contains("MainThread"))
        .collect();
    println!(
        "thread churn: {samples} samples, {errors} failed ticks, {torn} torn thread samples, {short_lived} samples of {} short-lived threads",
        roots.len()
    );
    assert!(
        short_lived > 0,
        "no sample of a short-lived thread: the churn was not sampled"
    );
    assert!(
        roots.len() > 1,
        "the short-lived threads share one label: {roots:?}"
    );
    // Failed reads are counted, not fatal, and rare (a torn thread list is
    // read again at once).
    assert!(
        errors * 50 < samples.max(1),
        "{errors} failed ticks for {samples} samples"
    );
}

/// Peak resident memory of `pid` while it runs, polled.
fn watch_rss(pid: i32) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            // VmHWM is the kernel's own high-water mark.
            if let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

#[test]
fn thousand_forked_children_under_subprocesses() {
    let interp = one_interp();
    let scratch = Scratch::new("faults-fork");
    let _cpu = cpu_lock();
    let target = start(&interp, &["fork", "1000"]);
    let pid = target.pid().to_string();
    let out = scratch.file("fork.txt");
    let seconds = 20.0;
    let t0 = Instant::now();
    let rec = Background::start(&[
        "record",
        "--pid",
        &pid,
        "--subprocesses",
        "-r",
        "200",
        "-d",
        &seconds.to_string(),
        "-f",
        "raw",
        "-o",
        out.to_str().unwrap(),
    ]);
    let rss = watch_rss(rec.pid());
    let forked = target.next_line(Duration::from_secs_f64(seconds));
    let forked_at = t0.elapsed();
    let f = rec
        .wait(Duration::from_secs_f64(seconds) + SLACK)
        .unwrap_or_else(|e| panic!("1000 forks: {e}"));
    let took = t0.elapsed();
    let peak_kb = rss.join().unwrap_or(0);
    println!(
        "1000 forks: children done after {:.1} s ({forked:?}); pyrometer ended after {:.1} s, peak RSS {peak_kb} kB, {}: {}",
        forked_at.as_secs_f64(),
        took.as_secs_f64(),
        f.status,
        f.stderr.trim()
    );
    assert!(
        forked
            .as_deref()
            .is_ok_and(|l| l.contains("\"forked\": 1000")),
        "the target did not finish its 1000 forks during the recording: {forked:?}"
    );
    assert_clean("1000 forks", &f, 0);
    assert!(f.stderr.contains("stopped: duration"), "{}", f.stderr);
    assert!(
        took < Duration::from_secs_f64(seconds + 10.0),
        "-d {seconds} took {took:?}"
    );
    check_folded("1000 forks", &out, "fork_children");
    assert!(peak_kb > 0, "no RSS reading of pyrometer");
    assert!(
        peak_kb < 256 * 1024,
        "pyrometer's memory grew to {peak_kb} kB following 1000 children"
    );
}

#[test]
fn sigint_and_sigterm_write_complete_outputs() {
    let interp = one_interp();
    let scratch = Scratch::new("faults-signals");
    let _cpu = cpu_lock();
    let target = start(&interp, &["spin"]);
    let pid = target.pid().to_string();
    for (name, signal) in [("SIGINT", libc::SIGINT), ("SIGTERM", libc::SIGTERM)] {
        let out = scratch.file(&format!("{name}.json"));
        let rec = Background::start(&[
            "record",
            "--pid",
            &pid,
            "-f",
            "speedscope",
            "-o",
            out.to_str().unwrap(),
        ]);
        wait_sampling(rec.pid()).unwrap_or_else(|e| panic!("{name}: {e}"));
        rec.signal(signal);
        let f = rec
            .wait(SLACK)
            .unwrap_or_else(|e| panic!("{name}: pyrometer did not stop: {e}"));
        println!("{name}: {}: {}", f.status, f.stderr.trim());
        assert_clean(name, &f, 0);
        assert!(f.stderr.contains("stopped: interrupted"), "{}", f.stderr);
        let text = std::fs::read_to_string(&out).expect("speedscope output");
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name}: the speedscope output is not JSON: {e}"));
        let names: Vec<&str> = doc["shared"]["frames"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            names.contains(&"spin_here"),
            "{name}: no spin_here frame in {names:?}"
        );
        let samples: usize = doc["profiles"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["samples"].as_array().map(Vec::len))
                    .sum()
            })
            .unwrap_or(0);
        assert!(samples > 0, "{name}: no samples in the speedscope output");
    }
}

/// Run `cmd` with stdout piped, read its first line, close the pipe (as
/// `| head -1` does), and wait for it.
fn read_one_line_then_close(cmd: &mut Command, what: &str) -> (String, Finished) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pyrometer");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let mut first = String::new();
    let mut reader = BufReader::new(stdout);
    let _ = reader.read_line(&mut first);
    drop(reader);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().ok().flatten() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(30) + SLACK {
            let _ = child.kill();
            panic!("{what}: pyrometer did not exit after its reader went away");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = err.join().unwrap_or_default();
    (
        first,
        Finished {
            status,
            stdout: String::new(),
            stderr,
        },
    )
}

#[test]
fn closed_stdout_pipe() {
    use std::os::unix::process::ExitStatusExt;
    let interp = one_interp();
    let scratch = Scratch::new("faults-sigpipe");
    let _cpu = cpu_lock();
    // Many deep stacks: far more output than a pipe buffers (64 KiB), so the
    // writes after the reader left do fail.
    let (target, ready) = start_target(&interp, "faults.py", &["threads", "40", "150"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ready["threads"], 40, "{ready}");
    let pid = target.pid().to_string();
    let full = pyrometer(&["dump", "--pid", &pid]);
    assert!(
        full.stdout.len() > 256 * 1024,
        "the dump is only {} bytes: too short to fill the pipe",
        full.stdout.len()
    );

    // `pyrometer dump --pid P | head -1`: ends quietly, like any Unix tool
    // whose reader went away (SIGPIPE or success, no message, no panic).
    let (first, f) = read_one_line_then_close(
        Command::new(PYROMETER).args(["dump", "--pid", &pid]),
        "dump | head -1",
    );
    println!("dump | head -1: {first:?}; {}: {:?}", f.status, f.stderr);
    assert!(first.starts_with(&format!("Process {pid}:")), "{first:?}");
    assert_no_panic("dump | head -1", &f.status, &f.stderr);
    assert!(
        f.status.success() || f.status.signal() == Some(libc::SIGPIPE),
        "dump | head -1: {}",
        f.status
    );
    assert!(
        f.stderr.trim().is_empty(),
        "dump | head -1 printed {:?}",
        f.stderr
    );

    // `record -f raw -o /dev/stdout | head -1` (and `-o -`): the profile
    // could not be written whole, so it says so, exits 1 and saves the
    // samples; no panic, and /dev/stdout is left alone.
    let rescue = scratch.file("tmp");
    std::fs::create_dir_all(&rescue).expect("rescue dir");
    for output in ["/dev/stdout", "-"] {
        let what = format!("record -o {output} | head -1");
        let (first, f) = read_one_line_then_close(
            Command::new(PYROMETER)
                .args([
                    "record",
                    "--pid",
                    &pid,
                    "-d",
                    "1",
                    "--idle",
                    "--threads",
                    "-f",
                    "raw",
                    "-o",
                    output,
                ])
                .env("TMPDIR", &rescue),
            &what,
        );
        println!(
            "{what}: {} bytes of first line; {}: {}",
            first.len(),
            f.status,
            f.stderr.trim()
        );
        assert_no_panic(&what, &f.status, &f.stderr);
        assert!(
            first.starts_with("thread ("),
            "{what}: first line {first:?}"
        );
        assert_eq!(f.status.code(), Some(EXIT_FAILURE), "{what}: {}", f.stderr);
        assert!(
            f.stderr.contains("closed the pipe"),
            "{what}: the error does not say why: {}",
            f.stderr
        );
        let saved = f
            .stderr
            .lines()
            .find_map(|l| {
                l.split_once("saved as folded stacks to ")
                    .map(|(_, p)| p.trim())
            })
            .unwrap_or_else(|| panic!("{what}: samples not saved: {}", f.stderr));
        assert!(
            saved.starts_with(rescue.to_str().unwrap()),
            "{what}: saved to {saved}, not in TMPDIR"
        );
        check_folded(&what, std::path::Path::new(saved), "park");
        std::fs::remove_file(saved).expect("remove the rescued file");
    }
    let dev_stdout = std::fs::symlink_metadata("/dev/stdout").expect("/dev/stdout");
    assert!(
        dev_stdout.file_type().is_symlink(),
        "/dev/stdout is no longer a symlink"
    );
}

/// `pyrometer record … 2>&1 | head`: the summary is printed into a pipe
/// whose reader has gone. pyrometer must end cleanly: the output written,
/// exit code 0, not killed by SIGPIPE, no panic.
#[test]
fn summary_into_a_closed_stderr_pipe() {
    use std::os::unix::process::ExitStatusExt;
    let interp = one_interp();
    let scratch = Scratch::new("faults-stderr-pipe");
    let _cpu = cpu_lock();
    let target = start(&interp, &["spin"]);
    let pid = target.pid().to_string();

    // The reader is gone before anything is written (`| head -c 0`):
    // stdout and stderr are the same pipe, as with `2>&1`.
    let out = scratch.file("closed.txt");
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(PYROMETER)
        .args(["record", "--pid", &pid, "-d", "1", "-f", "raw", "-o"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().expect("pipe"))
        .stderr(writer)
        .spawn()
        .expect("pyrometer");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(1) + SLACK {
            let _ = child.kill();
            let _ = child.wait();
            panic!("record with a closed stderr did not end");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    println!("record 2>&1 into a closed pipe: {status}");
    assert_eq!(
        status.signal(),
        None,
        "pyrometer was killed by a signal: {status}"
    );
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status} (101: a panic)"
    );
    check_folded("record 2>&1 into a closed pipe", &out, "spin_here");

    // The shell pipeline itself, with a reader that leaves after one line.
    let out2 = scratch.file("head.txt");
    let line = format!(
        "'{PYROMETER}' record --pid {pid} -d 1 -f raw -o '{}' 2>&1 | head -n 1; echo \"rc=${{PIPESTATUS[0]}}\"",
        out2.display()
    );
    let shell = pyrometer_testsupport::run_with_timeout(
        Command::new("bash").arg("-c").arg(&line),
        Duration::from_secs(1) + SLACK,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let text = stdout_of(&shell);
    println!("{line}:\n{text}");
    assert!(
        text.starts_with("pyrometer: wrote folded stacks to"),
        "the first line is not the summary's: {text:?}"
    );
    assert!(
        text.lines().any(|l| l == "rc=0"),
        "pyrometer's exit status in the pipeline is not 0 (141: SIGPIPE, 101: panic): {text:?}"
    );
    assert!(!text.contains("panicked"), "{text}");
    check_folded("record 2>&1 | head -n 1", &out2, "spin_here");
}

#[test]
fn blocking_when_another_debugger_is_attached() {
    let interp = one_interp();
    let scratch = Scratch::new("faults-traced");
    let _cpu = cpu_lock();
    let target = start(&interp, &["spin"]);
    let pid = target.pid();
    let pid_s = pid.to_string();
    let tracer = ChildGuard::new(
        Command::new("strace")
            .args(["-qq", "-o", "/dev/null", "-p", &pid_s])
            .stderr(Stdio::null())
            .spawn()
            .expect("strace (scripts/setup.sh installs it)"),
    );
    let t0 = Instant::now();
    while tracer_of(pid, pid) != Some(tracer.pid()) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "strace did not attach to the target"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let f = Background::start(&["dump", "--pid", &pid_s, "--blocking"])
        .wait(SLACK)
        .unwrap_or_else(|e| panic!("dump --blocking of a traced target: {e}"));
    println!(
        "dump --blocking of a traced target: {}: {}",
        f.status,
        f.stderr.trim()
    );
    assert_clean("dump --blocking of a traced target", &f, EXIT_FAILURE);
    let named = format!("already traced by PID {}", tracer.pid());
    assert!(
        f.stderr.contains(&named) && f.stderr.contains("run without --blocking"),
        "the error should name the tracer and the way out: {}",
        f.stderr
    );
    // Without --blocking it reads as usual.
    let f = Background::start(&["dump", "--pid", &pid_s])
        .wait(SLACK)
        .unwrap_or_else(|e| panic!("dump of a traced target: {e}"));
    assert_clean("dump of a traced target", &f, 0);
    assert!(f.stdout.contains("spin_here"), "{}", f.stdout);
    // record --blocking keeps going, and its summary says why reads failed.
    let out = scratch.file("traced.txt");
    let f = Background::start(&[
        "record",
        "--pid",
        &pid_s,
        "--blocking",
        "-d",
        "1",
        "-f",
        "raw",
        "-o",
        out.to_str().unwrap(),
    ])
    .wait(Duration::from_secs(1) + SLACK)
    .unwrap_or_else(|e| panic!("record --blocking of a traced target: {e}"));
    println!(
        "record --blocking of a traced target: {}: {}",
        f.status,
        f.stderr.trim()
    );
    assert_clean("record --blocking of a traced target", &f, 0);
    assert!(
        f.stderr.contains("last failed read:") && f.stderr.contains(&named),
        "the summary should say why the reads failed: {}",
        f.stderr
    );
    drop(tracer);
}

#[test]
fn second_interrupt_exits_when_the_output_blocks() {
    let interp = one_interp();
    let scratch = Scratch::new("faults-fifo");
    let _cpu = cpu_lock();
    let target = start(&interp, &["spin"]);
    let pid = target.pid().to_string();
    // A FIFO nobody reads: writing the output blocks for ever.
    let fifo = scratch.file("fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(st.success(), "mkfifo failed");
    let rec = Background::start(&[
        "record",
        "--pid",
        &pid,
        "-d",
        "1",
        "-f",
        "raw",
        "-o",
        fifo.to_str().unwrap(),
    ]);
    std::thread::sleep(Duration::from_millis(2000));
    rec.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    rec.signal(libc::SIGINT);
    let f = rec
        .wait(SLACK)
        .unwrap_or_else(|e| panic!("a second Ctrl-C did not end pyrometer: {e}"));
    println!(
        "blocked output, two Ctrl-C: {}: {}",
        f.status,
        f.stderr.trim()
    );
    assert_clean("blocked output, two Ctrl-C", &f, 130);
    assert!(f.stderr.contains("interrupted again"), "{}", f.stderr);
}
