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
    let mut exec_seen: Option<Instant> = None;
    // Poll quickly so the first instructions are seen; the interpreter maps
    // libpython and initializes within milliseconds of exec.
    let mut last_err: Option<anyhow::Error> = None;
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(status) = launched.exited() {
            let why = last_err.map(|e| format!(" ({e:#})")).unwrap_or_default();
            bail!("`{program}` exited ({status}) before its Python interpreter could be read{why}");
        }
        if exec_seen.is_none() {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
            if exe.is_some() && exe != own_exe {
                exec_seen = Some(Instant::now());
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
            // Well after exec and still no interpreter: not a Python program
            // (the pause covers the dynamic loader mapping libpython).
            Err(TargetError::Cpython(e @ CpythonError::NotPython { .. }))
                if exec_seen.is_some_and(|t| t.elapsed() > Duration::from_millis(300)) =>
            {
                if allow_non_python {
                    return Ok((None, launched));
                }
                stop(&mut launched);
                return Err(e).with_context(|| format!("cannot profile `{program}`"));
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

fn stop(l: &mut Launched) {
    let _ = l.child.kill();
    let _ = l.child.wait();
}
