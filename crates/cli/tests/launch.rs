//! `record -- CMD` where CMD is not Python itself but gets there: a shell
//! shim that runs for a while (a pyenv shim runs several helper commands)
//! and then execs the interpreter, and a shell that starts Python as a
//! child. The launcher is followed to its exec; a child is profiled with
//! `--subprocesses`, and without it the error says so.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

/// A script that burns CPU in a function of a telling name, then exits.
const WORK: &str = "import time\n\
def shimmed_work():\n    \
    end = time.time() + 1.5\n    \
    while time.time() < end:\n        \
        sum(range(1000))\n\
shimmed_work()\n";

fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `record -f raw -o OUT -- ARGS...`; its exit code, stderr and folded output.
fn record(scratch: &Scratch, name: &str, extra: &[&str], cmd: &[&str]) -> (i32, String, String) {
    let out = scratch.file(&format!("{name}.txt"));
    let out_s = out.to_string_lossy().into_owned();
    let mut args = vec!["record", "-r", "200", "-f", "raw", "-o", &out_s, "--quiet"];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(cmd);
    let run = pyrometer(&args);
    let stderr = stderr_of(&run);
    if let Some(p) = never_panics(&run.status, &stderr) {
        panic!("{}: {p}", show(&args));
    }
    let folded = std::fs::read_to_string(&out).unwrap_or_default();
    (run.status.code().unwrap_or(-1), stderr, folded)
}

fn samples_in(folded: &str, function: &str) -> u64 {
    parse_folded(folded)
        .unwrap_or_else(|e| panic!("bad folded output: {e}\n{folded}"))
        .iter()
        .filter(|(stack, _)| stack.iter().any(|f| folded_name(f) == function))
        .map(|(_, n)| n)
        .sum()
}

#[test]
fn launcher_scripts_are_followed_to_the_interpreter() {
    let interp = one_interp();
    let python = interp.path.to_string_lossy().into_owned();
    let scratch = Scratch::new("launch-shim");
    let work = scratch.file("work.py");
    std::fs::write(&work, WORK).expect("write work.py");
    let work_s = work.to_string_lossy().into_owned();

    // A shim like pyenv's: a shell that runs other commands for longer than
    // the 300 ms a plain exec is given (here `sleep`, a child process), then
    // execs Python. Before, this failed as "not a Python process".
    let shim = scratch.file("shim.sh");
    write_script(
        &shim,
        &format!("#!/bin/sh\nsleep 0.8\nexec \"{python}\" \"$@\"\n"),
    );
    let shim_s = shim.to_string_lossy().into_owned();
    let (code, stderr, folded) = record(&scratch, "shim", &[], &[&shim_s, &work_s]);
    assert_eq!(code, 0, "record -- shim.sh work.py: {stderr}");
    let n = samples_in(&folded, "shimmed_work");
    assert!(
        n >= 20,
        "record -- shim.sh: {n} samples in shimmed_work\n{folded}\n{stderr}"
    );

    // The same shim under --subprocesses: the root becomes Python after
    // launch has already settled for "only its children" and is found by
    // the session's scans.
    let (code, stderr, folded) = record(
        &scratch,
        "shim-sub",
        &["--subprocesses"],
        &[&shim_s, &work_s],
    );
    assert_eq!(
        code, 0,
        "record --subprocesses -- shim.sh work.py: {stderr}"
    );
    let n = samples_in(&folded, "shimmed_work");
    assert!(
        n >= 20,
        "record --subprocesses -- shim.sh: {n} samples\n{folded}\n{stderr}"
    );

    // A shell that starts Python as a child (no exec) is not followed
    // without --subprocesses, and the message says what to add.
    let parent = scratch.file("parent.sh");
    write_script(
        &parent,
        &format!("#!/bin/sh\n\"{python}\" \"$@\"\necho done\n"),
    );
    let parent_s = parent.to_string_lossy().into_owned();
    let (code, stderr, _) = record(&scratch, "parent", &[], &[&parent_s, &work_s]);
    assert_eq!(code, EXIT_NOT_PYTHON, "record -- parent.sh: {stderr}");
    assert!(
        stderr.contains("--subprocesses"),
        "the error for a shell parent names --subprocesses: {stderr}"
    );
    let (code, stderr, folded) = record(
        &scratch,
        "parent-sub",
        &["--subprocesses"],
        &[&parent_s, &work_s],
    );
    assert_eq!(code, 0, "record --subprocesses -- parent.sh: {stderr}");
    let n = samples_in(&folded, "shimmed_work");
    assert!(
        n >= 20,
        "record --subprocesses -- parent.sh: {n} samples\n{folded}\n{stderr}"
    );
}

/// pyrometer raises its own soft open-file limit (it keeps files open per
/// sampled thread) but a command it launches gets the limit pyrometer was
/// started with: profiling does not change the target's environment.
#[test]
fn open_file_limit_is_raised_for_pyrometer_not_for_the_command() {
    use std::os::unix::process::CommandExt;
    let interp = one_interp();
    let scratch = Scratch::new("launch-nofile");
    let seen = scratch.file("limit.txt");
    let script = scratch.file("limit.py");
    std::fs::write(
        &script,
        format!(
            "import resource, time\n\
             open({seen:?}, 'w').write(str(resource.getrlimit(resource.RLIMIT_NOFILE)[0]))\n\
             end = time.time() + 1.0\n\
             while time.time() < end:\n    sum(range(1000))\n",
            seen = seen.to_string_lossy()
        ),
    )
    .unwrap();
    let out = scratch.file("limit-out.txt");
    let mut cmd = std::process::Command::new(PYROMETER);
    cmd.args(["record", "-r", "100", "-f", "raw", "--quiet", "-o"])
        .arg(&out)
        .arg("--")
        .arg(&interp.path)
        .arg(&script);
    // Start pyrometer with a low soft limit, as many systems do (1024).
    // SAFETY: one setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            lim.rlim_cur = 256.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    let run = Background::spawn(&mut cmd);
    // pyrometer's own soft limit, from /proc while it runs.
    let limits = format!("/proc/{}/limits", run.pid());
    let soft_open_files = || {
        std::fs::read_to_string(&limits).ok().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
    };
    let mut own = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while own.is_none() && std::time::Instant::now() < deadline {
        own = soft_open_files();
        if own.is_none() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    // Read it once recording is under way (the limit is raised first thing).
    std::thread::sleep(std::time::Duration::from_millis(300));
    let own = soft_open_files().or(own).expect("pyrometer's limits");
    let f = run
        .wait(std::time::Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("record: {e}"));
    assert!(f.status.success(), "record failed: {}", f.stderr);
    let child: u64 = std::fs::read_to_string(&seen)
        .expect("the command wrote its limit")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(child, 256, "the launched command's soft limit changed");
    let own: u64 = own.parse().unwrap_or(u64::MAX);
    assert!(own > 256, "pyrometer's soft limit was not raised: {own}");
}
