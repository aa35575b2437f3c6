use std::path::PathBuf;

/// A failed read of the target's memory.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemoryError {
    /// The range is not mapped (or not fully).
    #[error("address {addr:#x} (+{len}) is not readable in the target")]
    Unmapped {
        /// Start of the read.
        addr: u64,
        /// Bytes requested.
        len: usize,
    },
    /// The process is gone.
    #[error("the target process has exited")]
    ProcessGone,
    /// The kernel refused access.
    #[error("permission denied reading the target's memory")]
    PermissionDenied,
    /// Some other OS error.
    #[error("reading target memory failed: {0}")]
    Os(i32),
}

/// Errors of OS-level process access.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// No process with that PID.
    #[error("no process with PID {0}")]
    NoSuchProcess(i32),
    /// PID is not valid (zero, negative, or beyond `pid_t`).
    #[error("{0} is not a valid PID (it must be a positive number)")]
    InvalidPid(i64),
    /// The process has exited and waits to be reaped (a zombie).
    #[error("process {0} has exited (it is a zombie, waiting for its parent to reap it)")]
    Exited(i32),
    /// The process exists but is a kernel thread, or has no executable.
    #[error("process {pid} cannot be profiled: {why}")]
    NotProfileable {
        /// The PID.
        pid: i32,
        /// Why.
        why: String,
    },
    /// Access denied by the kernel.
    #[error("permission denied for process {pid}: {what}")]
    PermissionDenied {
        /// The PID.
        pid: i32,
        /// What was attempted.
        what: String,
    },
    /// A file of /proc or a binary could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A binary could not be parsed.
    #[error("cannot parse ELF file {path}: {why}")]
    Elf {
        /// The path.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Memory read failure.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// ptrace failed.
    #[error("cannot stop thread {tid}: {why}")]
    Ptrace {
        /// The thread.
        tid: i32,
        /// Why.
        why: String,
    },
}

impl ProcessError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ProcessError::Io {
            path: path.into(),
            source,
        }
    }
}
