//! Getting a target: attach to a PID, or launch a command and attach to it
//! as soon as its interpreter is up.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pyrometer_cpython::CpythonError;
use pyrometer_process::ProcessError;
use pyrometer_sampler::{Target, TargetError};

/// A PID from the command line: positive and within `pid_t`.
pub fn checked_pid(pid: i64) -> Result<i32> {
    if pid <= 0 || pid > i32::MAX as i64 {
        return Err(ProcessError::InvalidPid(pid).into());
    }
    Ok(pid as i32)
}

/// Attach to a running process.
pub fn attach_pid(pid: i64) -> Result<Target> {
    let pid = checked_pid(pid)?;
    Target::attach(pid).with_context(|| format!("cannot profile process {pid}"))
}

/// A launched command; killed on drop if still running and `kill_on_drop`.
pub struct Launched {
    pub child: Child,
}

impl Launched {
    /// Whether it has exited (reaps it).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// Launch `command` and attach as soon as its interpreter is initialized.
/// With `allow_non_python` (for `--subprocesses`), a command that is not
/// itself Python (a shell, a process manager) is accepted: `None` is
/// returned and only its Python descendants are sampled.
#[allow(dead_code)] // the plain launch, kept for callers without --memory
pub fn launch(command: &[String], allow_non_python: bool) -> Result<(Option<Target>, Launched)> {
    launch_with(command, allow_non_python, false)
}

/// [`launch`], with the command's standard streams sent to /dev/null when
/// `silent` (`top` owns the terminal).
pub fn launch_with(
    command: &[String],
    allow_non_python: bool,
    silent: bool,
) -> Result<(Option<Target>, Launched)> {
    launch_with_env(command, allow_non_python, silent, &[])
}

/// [`launch_with`], with extra environment variables (`--memory`).
pub fn launch_with_env(
    command: &[String],
    allow_non_python: bool,
    silent: bool,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Result<(Option<Target>, Launched)> {
    let Some((program, args)) = command.split_first() else {
        bail!("no command given after --");
    };
    let own_exe = std::fs::read_link("/proc/self/exe").ok();
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    crate::limits::launch_with_original_limits(&mut cmd);
    if silent {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{program}`"))?;
    let pid = child.id() as i32;
    let mut launched = Launched { child };
    let start = Instant::now();
    // When the command last exec'd, and into what: a launcher (a pyenv or
    // virtualenv shim, `env`, a shell script ending in `exec python`) may
    // exec more than once, and runs for a while before its last exec.
    let mut exec_seen: Option<Instant> = None;
    let mut last_exe: Option<std::path::PathBuf> = None;
    let mut children_checked: Option<Instant> = None;
    // Poll quickly so the first instructions are seen; the interpreter maps
    // libpython and initializes within milliseconds of exec.
    let mut last_err: Option<anyhow::Error> = None;
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(status) = launched.exited() {
            let why = last_err.map(|e| format!(" ({e:#})")).unwrap_or_default();
            let hint = if last_exe.as_deref().is_some_and(is_launcher) {
                SUBPROCESSES_HINT
            } else {
                ""
            };
            bail!(
                "`{program}` exited ({status}) before its Python interpreter could be read{why}{hint}"
            );
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        if exe.is_some() && exe != own_exe && exe != last_exe {
            exec_seen = Some(Instant::now());
            last_exe = exe;
        }
        // With --subprocesses the session keeps looking at the root too
        // (crates/sampler Session::scan_children): no need to wait here.
        let in_launcher = !allow_non_python && last_exe.as_deref().is_some_and(is_launcher);
        let settle = if in_launcher {
            LAUNCHER_SETTLE
        } else {
            EXEC_SETTLE
        };
        // A launcher that runs Python as its child will not exec into it:
        // say so now rather than when the launcher gives up or exits.
        if in_launcher && children_checked.is_none_or(|t| t.elapsed() >= CHILDREN_EVERY) {
            children_checked = Some(Instant::now());
            if let Some(child) = python_child(pid) {
                stop(&mut launched);
                let e = CpythonError::NotPython {
                    pid,
                    why: format!("it runs Python as its child process {child}"),
                };
                return Err(e)
                    .with_context(|| format!("cannot profile `{program}`{SUBPROCESSES_HINT}"));
            }
        }
        match Target::attach(pid) {
            Ok(mut target) => {
                // The runtime exists before the first thread state: wait for it.
                match target.sample(Duration::ZERO) {
                    Ok(_) => return Ok((Some(target), launched)),
                    Err(e) => last_err = Some(e.into()),
                }
            }
            Err(TargetError::Cpython(e @ CpythonError::UnsupportedVersion { .. }))
            | Err(TargetError::Cpython(e @ CpythonError::FreeThreaded { .. })) => {
                stop(&mut launched);
                return Err(e).with_context(|| format!("cannot profile `{program}`"));
            }
            Err(TargetError::Process(e @ ProcessError::PermissionDenied { .. })) => {
                stop(&mut launched);
                return Err(e).with_context(|| format!("cannot profile `{program}`"));
            }
            // Well after the last exec and still no interpreter: not a
            // Python program (the pause covers the dynamic loader mapping
            // libpython, or a launcher getting to its exec).
            Err(TargetError::Cpython(e @ CpythonError::NotPython { .. }))
                if exec_seen.is_some_and(|t| t.elapsed() > settle) =>
            {
                if allow_non_python {
                    return Ok((None, launched));
                }
                stop(&mut launched);
                let exe = last_exe
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| program.clone());
                return Err(e).with_context(|| {
                    format!("cannot profile `{program}` (it runs `{exe}`){SUBPROCESSES_HINT}")
                });
            }
            Err(e) => last_err = Some(e.into()),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stop(&mut launched);
    Err(last_err.unwrap_or_else(|| anyhow::anyhow!("timed out"))).with_context(|| {
        format!("`{program}` did not start a Python interpreter pyrometer can read within 30 s")
    })
}

/// How long after its last exec a launched command that is not Python is
/// given to become Python: the dynamic loader maps libpython within this.
const EXEC_SETTLE: Duration = Duration::from_millis(300);
/// The same for a launcher (a shell or `env`): a pyenv shim runs several
/// helper commands before it execs the interpreter.
const LAUNCHER_SETTLE: Duration = Duration::from_secs(5);

/// How often a launcher's children are looked at for a Python one.
const CHILDREN_EVERY: Duration = Duration::from_millis(50);
const SUBPROCESSES_HINT: &str =
    "; to profile the Python processes a command starts as children, add --subprocesses";

/// A child of `pid` that is a readable Python process.
fn python_child(pid: i32) -> Option<i32> {
    let children = pyrometer_process::Process::attach(pid).ok()?.children();
    children
        .into_iter()
        .take(64)
        .find(|c| Target::attach(*c).is_ok())
}

/// Whether `exe` is a program that commonly execs into the real command: a
/// shell running a script or shim, or `env`.
fn is_launcher(exe: &std::path::Path) -> bool {
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
    matches!(
        name,
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "busybox" | "env"
    )
}

fn stop(l: &mut Launched) {
    let _ = l.child.kill();
    let _ = l.child.wait();
}
