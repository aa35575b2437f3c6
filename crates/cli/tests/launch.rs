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
