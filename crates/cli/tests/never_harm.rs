//! pyrometer never harms its target. Traced with strace during `record`
//! and `dump` in the default (non-blocking) mode, it makes no
//! process_vm_writev, no ptrace and sends no signal at all. In launch mode
//! (`record -- CMD`) the only signal is a SIGTERM to the command it started,
//! once sampling has ended (documented in README.md). With `--blocking`, the
//! target is resumed even when pyrometer is SIGKILLed while it holds the
//! target's threads stopped.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The syscalls that could harm a target.
const HARMFUL: &str =
    "process_vm_writev,ptrace,kill,tgkill,tkill,pidfd_send_signal,rt_sigqueueinfo,rt_tgsigqueueinfo";

/// One syscall strace saw: who made it, its name, the raw line.
#[derive(Debug)]
struct Call {
    tid: i32,
    name: String,
    line: String,
}

/// Parse `strace -f` output: `TID name(args) = result`, skipping signal
/// deliveries (`---`), exits (`+++`) and `<... resumed>` halves.
fn parse_strace(text: &str) -> Vec<Call> {
    text.lines()
        .filter_map(|line| {
            let (tid, rest) = line.trim_start().split_once(' ')?;
            let tid = tid.parse().ok()?;
            let rest = rest.trim_start();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() || !rest[name.len()..].starts_with('(') {
                return None;
            }
            Some(Call {
                tid,
                name,
                line: line.to_string(),
            })
        })
        .collect()
}

/// pyrometer's own threads: the first TID strace saw, and the threads it
/// cloned (CLONE_THREAD). Processes it started (CMD) are not among them.
fn own_threads(calls: &[Call]) -> BTreeSet<i32> {
    let mut own = BTreeSet::new();
    if let Some(first) = calls.first() {
        own.insert(first.tid);
    }
    for c in calls {
        if own.contains(&c.tid)
            && (c.name == "clone" || c.name == "clone3")
            && c.line.contains("CLONE_THREAD")
        {
            if let Some(tid) = c
                .line
                .rsplit_once("= ")
                .and_then(|(_, r)| r.trim().parse::<i32>().ok())
            {
                own.insert(tid);
            }
        }
    }
    own
}

/// Run pyrometer under strace; returns its output and pyrometer's calls
/// among [`HARMFUL`] (and clone/execve, to tell its threads from children).
fn traced(scratch: &Scratch, name: &str, args: &[&str]) -> (Finished, Vec<Call>) {
    let log = scratch.file(&format!("{name}.strace"));
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-e"])
        .arg(format!("trace={HARMFUL},clone,clone3,execve"))
        .arg("-o")
        .arg(&log)
        .arg(PYROMETER)
        .args(args);
    let f = Background::spawn(&mut cmd)
        .wait(RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| {
        panic!("{name}: no strace log (is strace installed? scripts/setup.sh): {e}")
    });
    let calls = parse_strace(&text);
    assert!(
        calls.iter().any(|c| c.name == "execve"),
        "{name}: strace recorded nothing: {text}"
    );
    let own = own_threads(&calls);
    let mine = calls
        .into_iter()
        .filter(|c| own.contains(&c.tid) && HARMFUL.split(',').any(|h| h == c.name))
        .collect();
    (f, mine)
}

#[test]
fn no_write_no_ptrace_no_signal_in_default_mode() {
    let interp = one_interp();
    let scratch = Scratch::new("harm-strace");
    let _cpu = cpu_lock();
    let (spinner, _) =
        start_target(&interp, "faults.py", &["spin"]).unwrap_or_else(|e| panic!("{e}"));
    let (forker, _) =
        start_target(&interp, "faults.py", &["fork", "300"]).unwrap_or_else(|e| panic!("{e}"));
    let spin = spinner.pid().to_string();
    let fork = forker.pid().to_string();
    let out = scratch.file("out");
    let o = out.to_str().unwrap();
    let runs: [(&str, Vec<&str>); 5] = [
        ("record", vec!["record", "--pid", &spin, "-d", "2", "-o", o]),
        (
            "record --idle --threads -f pprof",
            vec![
                "record",
                "--pid",
                &spin,
                "-d",
                "1",
                "--idle",
                "--threads",
                "-f",
                "pprof",
                "-o",
                o,
            ],
        ),
        (
            "record --subprocesses",
            vec![
                "record",
                "--pid",
                &fork,
                "--subprocesses",
                "-d",
                "2",
                "-f",
                "raw",
                "-o",
                o,
            ],
        ),
        ("dump", vec!["dump", "--pid", &spin]),
        (
            "dump --locals --json",
            vec!["dump", "--pid", &spin, "--locals", "--json"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, args) in &runs {
        let (f, calls) = traced(&scratch, &name.replace(' ', "_"), args);
        assert_ok(name, &f);
        println!("{name}: {} harmful calls", calls.len());
        for c in calls {
            failures.push(format!("{name}: {}", c.line));
        }
    }
    assert!(
        failures.is_empty(),
        "pyrometer wrote to, traced or signalled a process:\n{}",
        failures.join("\n")
    );
    // The targets ran on undisturbed.
    assert_eq!(
        proc_state(spinner.pid()).map(|s| s != 'T' && s != 't'),
        Some(true)
    );
}

/// The PID a `kill(PID, SIG...)` line is aimed at, and the signal.
fn kill_args(line: &str) -> Option<(i32, String)> {
    let args = line.split_once("kill(")?.1;
    let (pid, rest) = args.split_once(',')?;
    let sig = rest.split(')').next()?.trim().to_string();
    Some((pid.trim().parse().ok()?, sig))
}

#[test]
fn launch_mode_only_terminates_its_own_command_at_the_end() {
    let interp = one_interp();
    let scratch = Scratch::new("harm-launch");
    let _cpu = cpu_lock();
    let python = interp.path.to_str().unwrap();
    let out = scratch.file("out.txt");
    let o = out.to_str().unwrap();

    // A command that outlives -d: one SIGTERM, to it, after sampling.
    let marker = scratch.file("pid");
    let code = format!(
        "import os\nopen({:?}, 'w').write(str(os.getpid()))\nwhile True: pass",
        marker.display().to_string()
    );
    let (f, calls) = traced(
        &scratch,
        "launch-outlives",
        &[
            "record", "-d", "2", "-f", "raw", "-o", o, "--", python, "-c", &code,
        ],
    );
    assert_ok("record -- CMD that outlives -d", &f);
    let child: i32 = std::fs::read_to_string(&marker)
        .expect("the command's pid")
        .trim()
        .parse()
        .expect("pid");
    println!("launch, command outlives -d: {calls:?}");
    assert!(
        f.stderr.contains("stopped: duration"),
        "it should have ended by -d: {}",
        f.stderr
    );
    assert_eq!(
        calls.len(),
        1,
        "expected exactly one signal, to the command: {calls:?}"
    );
    assert_eq!(
        kill_args(&calls[0].line),
        Some((child, "SIGTERM".to_string())),
        "{calls:?}"
    );

    // A command that ends by itself: nothing is sent at all.
    let (f, calls) = traced(
        &scratch,
        "launch-exits",
        &[
            "record",
            "-d",
            "30",
            "-f",
            "raw",
            "-o",
            o,
            "--",
            python,
            "-c",
            "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass",
        ],
    );
    assert_ok("record -- CMD that exits", &f);
    assert!(f.stderr.contains("stopped: target exited"), "{}", f.stderr);
    assert!(
        calls.is_empty(),
        "signals sent to a command that exited: {calls:?}"
    );
}

/// Progress lines (`{"progress": N}`) keep coming and N grows.
fn progresses(target: &ChildGuard, what: &str) -> Result<(), String> {
    // Drop lines printed before the check.
    while target.next_line(Duration::from_millis(20)).is_ok() {}
    let value =
        |l: &str| -> Option<u64> { serde_json::from_str::<Value>(l).ok()?["progress"].as_u64() };
    let first = target
        .next_line(Duration::from_secs(10))
        .map_err(|e| format!("{what}: no progress: {e}"))?;
    let mut last = value(&first).ok_or(format!("{what}: bad progress line {first:?}"))?;
    for _ in 0..3 {
        let l = target
            .next_line(Duration::from_secs(10))
            .map_err(|e| format!("{what}: progress stopped at {last}: {e}"))?;
        let v = value(&l).ok_or(format!("{what}: bad progress line {l:?}"))?;
        if v <= last {
            return Err(format!("{what}: progress went from {last} to {v}"));
        }
        last = v;
    }
    Ok(())
}

#[test]
fn blocking_target_resumes_when_pyrometer_is_killed_mid_sample() {
    let interp = one_interp();
    let scratch = Scratch::new("harm-blocking");
    let _cpu = cpu_lock();
    let (target, _) =
        start_target(&interp, "faults.py", &["spin"]).unwrap_or_else(|e| panic!("{e}"));
    let pid = target.pid();
    let pid_s = pid.to_string();
    progresses(&target, "before").unwrap_or_else(|e| panic!("{e}"));

    // A --blocking record and dump that end normally leave it running.
    let out = scratch.file("out.txt");
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
    .wait(RUN_TIMEOUT)
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ok("record --blocking", &f);
    let f = Background::start(&["dump", "--pid", &pid_s, "--blocking"])
        .wait(RUN_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ok("dump --blocking", &f);
    progresses(&target, "after record and dump --blocking").unwrap_or_else(|e| panic!("{e}"));

    // SIGKILL pyrometer at an instant it holds the target seized (the
    // target's TracerPid is pyrometer), several times.
    let mut caught = 0;
    for round in 0..5 {
        let rec = Background::start(&[
            "record",
            "--pid",
            &pid_s,
            "--blocking",
            "-r",
            "1000",
            "-d",
            "60",
            "-f",
            "raw",
            "-o",
            out.to_str().unwrap(),
        ]);
        let t0 = Instant::now();
        let mut seized = false;
        while t0.elapsed() < Duration::from_secs(20) {
            if tracer_of(pid, pid) == Some(rec.pid()) {
                rec.signal(libc::SIGKILL);
                seized = true;
                break;
            }
            std::hint::spin_loop();
        }
        if !seized {
            rec.signal(libc::SIGKILL);
        }
        let f = rec.wait(RUN_TIMEOUT).expect("killed pyrometer is reaped");
        assert!(
            !f.status.success(),
            "round {round}: pyrometer was not killed: {}",
            f.status
        );
        caught += usize::from(seized);
        // Detached by the kernel: no tracer, not in a tracing stop, running.
        let t0 = Instant::now();
        while tracer_of(pid, pid) != Some(0) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "round {round}: the target is still traced by {:?}",
                tracer_of(pid, pid)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let state = proc_state(pid);
        assert!(
            matches!(state, Some('R') | Some('S')),
            "round {round}: the target is in state {state:?} after pyrometer was killed"
        );
        progresses(
            &target,
            &format!("round {round}, after pyrometer was killed"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    println!("--blocking: pyrometer killed while holding the target in {caught} of 5 rounds");
    assert!(
        caught >= 1,
        "pyrometer was never caught holding the target: the test proved nothing"
    );
}
