//! Exit codes, and advice printed with errors.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure while running or writing output |
//! | 2 | bad command line (from clap) |
//! | 3 | no such process, or it exited (or is a zombie) before it could be read |
//! | 4 | permission denied |
//! | 5 | not a Python process, or an unsupported Python |
//! | 130 | interrupted twice (Ctrl-C / SIGTERM again while writing): nothing written |

use pyrometer_cpython::CpythonError;
use pyrometer_process::{MemoryError, ProcessError};
use pyrometer_sampler::{SampleError, TargetError};

pub const FAILURE: i32 = 1;
pub const USAGE: i32 = 2;
pub const NO_PROCESS: i32 = 3;
pub const PERMISSION: i32 = 4;
pub const NOT_PYTHON: i32 = 5;
pub const INTERRUPTED: i32 = 130;

/// A flag value that clap cannot check on its own (its meaning depends on
/// other flags): a bad command line, exit code 2 like clap's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `err` as a bad-command-line error.
pub fn usage(err: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(UsageError(format!("{err:#}")))
}

/// A classification of the root error, if it is one of ours.
enum Kind {
    Usage,
    NoProcess,
    Permission,
    NotPython,
    Other,
}

fn kind(err: &anyhow::Error) -> Kind {
    for cause in err.chain() {
        if cause.downcast_ref::<UsageError>().is_some() {
            return Kind::Usage;
        }
        if let Some(e) = cause.downcast_ref::<ProcessError>() {
            return process_kind(e);
        }
        if let Some(e) = cause.downcast_ref::<CpythonError>() {
            return cpython_kind(e);
        }
        if let Some(e) = cause.downcast_ref::<TargetError>() {
            return match e {
                TargetError::Cpython(c) => cpython_kind(c),
                TargetError::Process(p) => process_kind(p),
                _ => Kind::Other,
            };
        }
        if let Some(e) = cause.downcast_ref::<SampleError>() {
            return match e {
                SampleError::ProcessGone => Kind::NoProcess,
                SampleError::PermissionDenied => Kind::Permission,
                _ => Kind::Other,
            };
        }
        if let Some(e) = cause.downcast_ref::<MemoryError>() {
            return memory_kind(e);
        }
    }
    Kind::Other
}

fn process_kind(e: &ProcessError) -> Kind {
    match e {
        ProcessError::NoSuchProcess(_) | ProcessError::InvalidPid(_) | ProcessError::Exited(_) => {
            Kind::NoProcess
        }
        ProcessError::PermissionDenied { .. } => Kind::Permission,
        ProcessError::NotProfileable { .. } => Kind::NotPython,
        ProcessError::Memory(m) => memory_kind(m),
        _ => Kind::Other,
    }
}

fn memory_kind(e: &MemoryError) -> Kind {
    match e {
        MemoryError::PermissionDenied => Kind::Permission,
        MemoryError::ProcessGone => Kind::NoProcess,
        _ => Kind::Other,
    }
}

fn cpython_kind(e: &CpythonError) -> Kind {
    match e {
        CpythonError::Process(p) => process_kind(p),
        CpythonError::Memory(m) => memory_kind(m),
        CpythonError::NotPython { .. }
        | CpythonError::UnsupportedVersion { .. }
        | CpythonError::FreeThreaded { .. } => Kind::NotPython,
        _ => Kind::Other,
    }
}

pub fn code_for(err: &anyhow::Error) -> i32 {
    match kind(err) {
        Kind::Usage => USAGE,
        Kind::NoProcess => NO_PROCESS,
        Kind::Permission => PERMISSION,
        Kind::NotPython => NOT_PYTHON,
        Kind::Other => FAILURE,
    }
}

pub fn hint_for(err: &anyhow::Error) -> Option<String> {
    match kind(err) {
        Kind::Permission => {
            let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "not set here (no Yama)".into());
            Some(format!(
                "hint: reading another process's memory needs the same rights as a debugger.\n\
                 \x20     Run pyrometer as root (sudo pyrometer ...), or give it the capability:\n\
                 \x20       sudo setcap cap_sys_ptrace=ep $(command -v pyrometer)\n\
                 \x20     In a container, start it with --cap-add SYS_PTRACE.\n\
                 \x20     kernel.yama.ptrace_scope is {scope}; with 1, only a parent may read its\n\
                 \x20     children unless pyrometer has CAP_SYS_PTRACE (or launch the target with\n\
                 \x20     `pyrometer record -- CMD`)."
            ))
        }
        Kind::NotPython => Some(
            "hint: pass the PID of a CPython 3.8-3.15 process (for gunicorn or uvicorn, any worker or the master)."
                .into(),
        ),
        Kind::NoProcess => Some("hint: check the PID with `ps -ef | grep python`.".into()),
        Kind::Other => None,
        Kind::Usage => Some("hint: see `pyrometer help` for the flags and their values.".into()),
    }
}
