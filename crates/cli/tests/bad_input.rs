//! Bad input, against real processes and real file systems: PIDs that are
//! not numbers, zombies, kernel threads, an unsupported CPython, unwritable
//! and full output locations, unknown formats and conflicting flags, and a
//! permission denied for real (pyrometer run as `nobody` against a
//! root-owned target). Each: a clear message, the documented exit code
//! (crates/cli/src/exit.rs), no panic. What dump.rs and record.rs already
//! check (PID 0, negative, nonexistent, `sleep`, a missing output
//! directory) is not repeated here.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// The unprivileged user and group the permission tests run as.
const NOBODY: u32 = 65534;

/// What one run must show.
struct Expect<'a> {
    code: i32,
    needles: &'a [&'a str],
}

/// Check a finished run; returns the problems.
fn judge(what: &str, out: &Output, want: &Expect) -> Vec<String> {
    let err = stderr_of(out);
    println!("`{what}` -> {}: {}", out.status, err.trim());
    let mut bad = Vec::new();
    if let Some(p) = never_panics(&out.status, &err) {
        bad.push(p);
    }
    if out.status.code() != Some(want.code) {
        bad.push(format!(
            "exit status {}, expected {}",
            out.status, want.code
        ));
    }
    for n in want.needles {
        if !err.contains(n) {
            bad.push(format!("stderr lacks {n:?}"));
        }
    }
    bad.into_iter()
        .map(|b| format!("`{what}`: {b}; stderr: {err}"))
        .collect()
}

fn run(failures: &mut Vec<String>, args: &[&str], want: Expect) -> Output {
    let out = pyrometer(args);
    failures.extend(judge(&show(args), &out, &want));
    out
}

#[test]
fn pids_that_cannot_be_profiled() {
    let mut failures = Vec::new();
    for args in [
        &["dump", "--pid", "abc"][..],
        &["dump", "--pid", "12x"],
        &["dump", "--pid", ""],
        &["record", "--pid", "abc", "-o", "/tmp/never.svg"],
        &["dump", "--pid", "99999999999999999999"],
    ] {
        run(
            &mut failures,
            args,
            Expect {
                code: EXIT_USAGE,
                needles: &["error:", "--pid"],
            },
        );
    }

    // A zombie: `sh` forks `sleep 0` and execs into `sleep 30`, which never
    // reaps its child.
    let parent = Command::new("sh")
        .args(["-c", "sleep 0 & exec sleep 30"])
        .spawn()
        .expect("sh");
    let parent = ChildGuard::new(parent);
    wait_exe(parent.pid(), "sleep");
    let t0 = Instant::now();
    let zombie = loop {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", parent.pid()))
                .unwrap_or_default();
        let z = children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .find(|p| proc_state(*p) == Some('Z'));
        if let Some(z) = z {
            break z;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no zombie appeared");
        std::thread::sleep(Duration::from_millis(10));
    };
    let z = zombie.to_string();
    let scratch = Scratch::new("bad-zombie");
    let out = scratch.file("z.svg");
    for args in [
        &["dump", "--pid", &z][..],
        &[
            "record",
            "--pid",
            &z,
            "-d",
            "1",
            "-o",
            out.to_str().unwrap(),
        ],
    ] {
        run(
            &mut failures,
            args,
            Expect {
                code: EXIT_NO_PROCESS,
                needles: &["zombie", &z, "has exited"],
            },
        );
    }
    if out.exists() {
        failures.push("an output was written for a zombie".into());
    }
    drop(parent);

    // A kernel thread: kthreadd (PID 2) where it is visible, else any.
    let kthread = kernel_thread().expect("no kernel thread is visible in /proc");
    let k = kthread.to_string();
    run(
        &mut failures,
        &["dump", "--pid", &k],
        Expect {
            code: EXIT_NOT_PYTHON,
            needles: &["kernel thread", &k],
        },
    );
    run(
        &mut failures,
        &[
            "record",
            "--pid",
            &k,
            "-d",
            "1",
            "-o",
            out.to_str().unwrap(),
        ],
        Expect {
            code: EXIT_NOT_PYTHON,
            needles: &["kernel thread"],
        },
    );

    // A program that is not Python, recorded (dump.rs checks `dump`).
    let sleep = ChildGuard::new(Command::new("sleep").arg("30").spawn().expect("sleep"));
    wait_exe(sleep.pid(), "sleep");
    let s = sleep.pid().to_string();
    run(
        &mut failures,
        &[
            "record",
            "--pid",
            &s,
            "-d",
            "1",
            "-o",
            out.to_str().unwrap(),
        ],
        Expect {
            code: EXIT_NOT_PYTHON,
            needles: &["does not look like a Python", &s],
        },
    );
    run(
        &mut failures,
        &[
            "record",
            "-d",
            "1",
            "-o",
            out.to_str().unwrap(),
            "--",
            "sleep",
            "5",
        ],
        Expect {
            code: EXIT_NOT_PYTHON,
            needles: &["does not look like a Python", "sleep"],
        },
    );
    if out.exists() {
        failures.push("an output was written for a process that is not Python".into());
    }
    assert_no_failures(&failures);
}

/// PID 2 if it is kthreadd, else the first process flagged PF_KTHREAD.
fn kernel_thread() -> Option<i32> {
    let is_kthread = |pid: i32| -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let (_, rest) = s.rsplit_once(')')?;
                // Field 9 (flags) is the 7th after the command name.
                rest.split_whitespace().nth(6)?.parse::<u64>().ok()
            })
            .is_some_and(|flags| flags & 0x0020_0000 != 0)
    };
    if is_kthread(2) {
        return Some(2);
    }
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|p| is_kthread(*p))
}

/// pyenv's CPython 2.7, 3.6 and 3.7 installs.
fn old_pythons() -> Vec<PathBuf> {
    let Some(root) = pyenv_testsupport_root() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir(root.join("versions")) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let old = ["2.7", "3.6", "3.7"]
                .iter()
                .any(|v| name.starts_with(&format!("{v}.")));
            let python = e.path().join("bin/python");
            if old && python.exists() {
                found.push(python);
            }
        }
    }
    found.sort();
    found
}

fn pyenv_testsupport_root() -> Option<PathBuf> {
    pyrometer_testsupport::pyenv_root()
}

#[test]
fn unsupported_python_versions() {
    let olds = old_pythons();
    println!("old interpreters: {olds:?}");
    assert!(
        !olds.is_empty(),
        "no pyenv CPython 2.7, 3.6 or 3.7 to test the unsupported-version error with \
         (install one: pyenv install 3.7)"
    );
    let scratch = Scratch::new("bad-old");
    let out = scratch.file("old.svg");
    let mut failures = Vec::new();
    for python in &olds {
        let version = python
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let minor: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
        let mut child = Command::new(python)
            .args([
                "-c",
                "import sys, time\nsys.stdout.write('go\\n')\nsys.stdout.flush()\ntime.sleep(60)",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("old python");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        let guard = ChildGuard::new(child);
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("ready line");
        let pid = guard.pid().to_string();
        let needles = ["is not supported", minor.as_str(), "3.8"];
        run(
            &mut failures,
            &["dump", "--pid", &pid],
            Expect {
                code: EXIT_NOT_PYTHON,
                needles: &needles,
            },
        );
        drop(guard);
        run(
            &mut failures,
            &[
                "record",
                "-o",
                out.to_str().unwrap(),
                "--",
                python.to_str().unwrap(),
                "-c",
                "import time; time.sleep(5)",
            ],
            Expect {
                code: EXIT_NOT_PYTHON,
                needles: &needles,
            },
        );
    }
    assert_no_failures(&failures);
}

#[test]
fn flags_that_do_not_go_together_or_are_unknown() {
    let mut failures = Vec::new();
    let usage = |needles: &'static [&'static str]| Expect {
        code: EXIT_USAGE,
        needles,
    };
    run(
        &mut failures,
        &["record", "--pid", "1", "-f", "bogus"],
        usage(&["bogus", "possible values", "flamegraph"]),
    );
    run(
        &mut failures,
        &["record", "--pid", "1", "--", "python3", "-c", "1"],
        usage(&["--pid", "cannot be used with"]),
    );
    run(
        &mut failures,
        &["record", "--pid", "1", "--gil", "--mode", "cpu"],
        usage(&["--gil", "--mode", "cannot be used with"]),
    );
    run(
        &mut failures,
        &["record", "--pid", "1", "--blocking", "--nonblocking"],
        usage(&["--blocking", "cannot be used with"]),
    );
    run(
        &mut failures,
        &["record", "--pid", "1", "-r", "0"],
        usage(&["--rate", "0"]),
    );
    run(
        &mut failures,
        &["record", "--pid", "1", "--mode", "fast"],
        usage(&["fast", "possible values"]),
    );
    run(&mut failures, &["record"], usage(&["--pid", "required"]));
    run(&mut failures, &["dump"], usage(&["--pid", "required"]));
    run(
        &mut failures,
        &["dump", "--pid", "1", "--max-depth", "0"],
        usage(&["--max-depth"]),
    );
    run(&mut failures, &["frobnicate"], usage(&["frobnicate"]));
    assert_no_failures(&failures);
}

/// Every duration-like flag is checked when the command line is parsed, by
/// one rule (finite seconds in the flag's range, at most ten years) with
/// one message, before anything is attached or launched.
#[test]
fn duration_flags_share_one_check_and_message() {
    let mut failures = Vec::new();
    const TEN_YEARS: &str = "315360000";
    // (command line, flag named in the message, its range as printed)
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["record", "--pid", "1", "-d", "0"],
            "--duration",
            "from 0.001 to 315360000",
        ),
        (
            &["record", "--pid", "1", "-d", "nan"],
            "--duration",
            "from 0.001 to 315360000",
        ),
        (
            &["record", "--pid", "1", "-d", "1e30"],
            "--duration",
            "from 0.001 to 315360000",
        ),
        (
            &["record", "--pid", "1", "-d", "0.0001"],
            "--duration",
            "from 0.001 to 315360000",
        ),
        (
            &["record", "--pid", "1", "--write-every", "0"],
            "--write-every",
            "from 0.05 to 315360000",
        ),
        (
            &["record", "--pid", "1", "--write-every", "1e9"],
            "--write-every",
            "from 0.05 to 315360000",
        ),
        (
            &["record", "--pid", "1", "--write-every", "inf"],
            "--write-every",
            "from 0.05 to 315360000",
        ),
        (
            &["record", "--pid", "1", "--pyroscope-interval", "0"],
            "--pyroscope-interval",
            "from 0.1 to 3600",
        ),
        (
            &["record", "--pid", "1", "--pyroscope-interval", "1e30"],
            "--pyroscope-interval",
            "from 0.1 to 3600",
        ),
        (
            &["top", "--pid", "1", "--refresh", "0"],
            "--refresh",
            "from 0.1 to 60",
        ),
        (
            &["top", "--pid", "1", "--refresh", "1e30"],
            "--refresh",
            "from 0.1 to 60",
        ),
        (
            &["top", "--pid", "1", "--refresh", "nan"],
            "--refresh",
            "from 0.1 to 60",
        ),
    ];
    for (args, flag, range) in cases {
        let value = args.last().unwrap();
        run(
            &mut failures,
            args,
            Expect {
                code: EXIT_USAGE,
                needles: &[
                    flag,
                    &format!("{value:?} is not a number of seconds {range}"),
                ],
            },
        );
    }
    // The cap is the same for every flag that takes long periods: ten years
    // is accepted by the parser (the run then fails on PID 1, not on the flag).
    for args in [
        &["record", "--pid", "1", "-d", TEN_YEARS][..],
        &["record", "--pid", "1", "--write-every", TEN_YEARS][..],
    ] {
        let out = pyrometer(args);
        let err = stderr_of(&out);
        if out.status.code() == Some(EXIT_USAGE) || err.contains("is not a number of seconds") {
            failures.push(format!("`{}` refused ten years: {err}", show(args)));
        }
    }
    assert_no_failures(&failures);
}

/// A copy of the binary that `nobody` can run (the build directory is
/// usually under root's 0700 home).
fn binary_for_nobody(scratch: &Scratch) -> PathBuf {
    let bin = scratch.file("pyrometer");
    std::fs::copy(PYROMETER, &bin).expect("copy pyrometer");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

/// `setpriv` as `nobody`, no supplementary groups.
fn as_nobody(bin: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg(bin);
    c
}

fn run_as_nobody(failures: &mut Vec<String>, bin: &Path, cwd: &Path, args: &[&str], want: Expect) {
    let out = pyrometer_testsupport::run_with_timeout(
        as_nobody(bin).args(args).current_dir(cwd),
        RUN_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    failures.extend(judge(&format!("(as nobody) {}", show(args)), &out, &want));
}

/// A Python that `nobody` can run, spinning, run as `nobody`.
fn nobody_python() -> ChildGuard {
    let mut child = as_nobody(Path::new(pyrometer_testsupport::DEBIAN_PYTHON))
        .args(["-c", "print('go', flush=True)\nwhile True: pass"])
        .current_dir("/")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python as nobody");
    let stdout = child.stdout.take().expect("stdout");
    let guard = ChildGuard::new(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("go");
    assert_eq!(line.trim(), "go");
    guard
}

#[test]
fn permission_denied_for_real() {
    let interp = one_interp();
    let scratch = Scratch::new("bad-perm");
    let bin = binary_for_nobody(&scratch);
    let writable = scratch.file("nobody");
    std::fs::create_dir_all(&writable).expect("dir");
    std::os::unix::fs::chown(&writable, Some(NOBODY), Some(NOBODY)).expect("chown");
    // A root-owned target.
    let (target, _) =
        start_target(&interp, "faults.py", &["spin"]).unwrap_or_else(|e| panic!("{e}"));
    let pid = target.pid().to_string();
    let out = writable.join("x.svg");
    let mut failures = Vec::new();
    let needles: &[&str] = &[
        "permission denied",
        &pid,
        "root",
        "CAP_SYS_PTRACE",
        "ptrace_scope",
    ];
    run_as_nobody(
        &mut failures,
        &bin,
        &writable,
        &["dump", "--pid", &pid],
        Expect {
            code: EXIT_PERMISSION,
            needles,
        },
    );
    run_as_nobody(
        &mut failures,
        &bin,
        &writable,
        &[
            "record",
            "--pid",
            &pid,
            "-d",
            "1",
            "-o",
            out.to_str().unwrap(),
        ],
        Expect {
            code: EXIT_PERMISSION,
            needles,
        },
    );
    if out.exists() {
        failures.push("an output was written for a process that could not be read".into());
    }
    assert_no_failures(&failures);
}

#[test]
fn unwritable_output_directory() {
    let scratch = Scratch::new("bad-unwritable");
    let bin = binary_for_nobody(&scratch);
    // Owned by nobody but 0500: even its owner cannot create files in it.
    let dir = scratch.file("readonly");
    std::fs::create_dir_all(&dir).expect("dir");
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).expect("chmod");
    let target = nobody_python();
    let pid = target.pid().to_string();
    let out = dir.join("x.svg");
    let mut failures = Vec::new();
    let t0 = Instant::now();
    run_as_nobody(
        &mut failures,
        &bin,
        &scratch.0,
        &[
            "record",
            "--pid",
            &pid,
            "-d",
            "5",
            "-o",
            out.to_str().unwrap(),
        ],
        Expect {
            code: EXIT_FAILURE,
            needles: &["cannot write", dir.to_str().unwrap(), "Permission denied"],
        },
    );
    // Refused before sampling, not after the 5 s.
    if t0.elapsed() > Duration::from_secs(4) {
        failures.push(format!(
            "the refusal took {:?}: it sampled first",
            t0.elapsed()
        ));
    }
    // No -o, in a current directory it cannot write.
    run_as_nobody(
        &mut failures,
        &bin,
        &dir,
        &["record", "--pid", &pid, "-d", "5"],
        Expect {
            code: EXIT_FAILURE,
            needles: &["current directory is not writable", "-o"],
        },
    );
    // The same user can profile its own process into a directory it can
    // write: the refusals above were about the directory only.
    let ok_dir = scratch.file("writable");
    std::fs::create_dir_all(&ok_dir).expect("dir");
    std::os::unix::fs::chown(&ok_dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    let ok_out = ok_dir.join("x.txt");
    run_as_nobody(
        &mut failures,
        &bin,
        &ok_dir,
        &[
            "record",
            "--pid",
            &pid,
            "-d",
            "1",
            "-f",
            "raw",
            "-o",
            ok_out.to_str().unwrap(),
        ],
        Expect {
            code: 0,
            needles: &["wrote folded stacks"],
        },
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    if !leftovers.is_empty() {
        failures.push(format!(
            "files left in the read-only directory: {leftovers:?}"
        ));
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod back");
    assert_no_failures(&failures);
}

/// A 64 KiB tmpfs, unmounted when dropped.
struct SmallTmpfs(PathBuf);

impl SmallTmpfs {
    fn mount(at: PathBuf) -> SmallTmpfs {
        std::fs::create_dir_all(&at).expect("mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&at)
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "cannot mount a tmpfs at {} (run as root)",
            at.display()
        );
        SmallTmpfs(at)
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk() {
    let interp = one_interp();
    let scratch = Scratch::new("bad-full");
    let fs = SmallTmpfs::mount(scratch.file("full"));
    // Fill it: creating the output still works (a free inode), writing it
    // does not.
    let filler = fs.0.join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![0u8; 4096];
    loop {
        if std::io::Write::write_all(&mut f, &chunk).is_err() {
            break;
        }
    }
    drop(f);
    let rescue = scratch.file("tmp");
    std::fs::create_dir_all(&rescue).expect("tmp");
    let (target, _) =
        start_target(&interp, "faults.py", &["spin"]).unwrap_or_else(|e| panic!("{e}"));
    let pid = target.pid().to_string();
    let mut failures = Vec::new();
    for format in ["flamegraph", "raw"] {
        let out = fs.0.join(format!("profile.{format}"));
        let args = [
            "record",
            "--pid",
            &pid,
            "-d",
            "1",
            "-f",
            format,
            "-o",
            out.to_str().unwrap(),
        ];
        let o = pyrometer_testsupport::run_with_timeout(
            Command::new(PYROMETER).args(args).env("TMPDIR", &rescue),
            RUN_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        failures.extend(judge(
            &show(&args),
            &o,
            &Expect {
                code: EXIT_FAILURE,
                needles: &[
                    "cannot write",
                    out.to_str().unwrap(),
                    "No space left on device",
                ],
            },
        ));
        let err = stderr_of(&o);
        match err.lines().find_map(|l| {
            l.split_once("saved as folded stacks to ")
                .map(|(_, p)| p.trim())
        }) {
            Some(saved) => {
                let text = std::fs::read_to_string(saved).unwrap_or_default();
                let ok = saved.starts_with(rescue.to_str().unwrap())
                    && parse_folded(&text).is_ok_and(|f| {
                        f.iter().any(|(frames, n)| {
                            *n > 0 && frames.iter().any(|f| f.contains("spin_here"))
                        })
                    });
                if !ok {
                    failures.push(format!("{format}: the rescued samples at {saved} are not folded stacks of the target: {text:?}"));
                }
                let _ = std::fs::remove_file(saved);
            }
            None => failures.push(format!(
                "{format}: the samples were not saved elsewhere: {err}"
            )),
        }
        if out.exists() {
            failures.push(format!(
                "{format}: a partial output was left at {}",
                out.display()
            ));
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(&fs.0)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name())
                .filter(|n| n != "filler")
                .collect()
        })
        .unwrap_or_default();
    if !leftovers.is_empty() {
        failures.push(format!(
            "temporary files left on the full disk: {leftovers:?}"
        ));
    }
    drop(fs);
    assert_no_failures(&failures);
}
