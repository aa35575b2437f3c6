use pyrometer_process::{MemoryError, ProcessError};

/// Errors of the interpreter model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CpythonError {
    /// OS-level failure (no such process, permission, ...).
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A read of target memory failed.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// No CPython interpreter was found in the process.
    #[error("process {pid} does not look like a Python program: {why}")]
    NotPython {
        /// The PID.
        pid: i32,
        /// What was looked for.
        why: String,
    },
    /// The interpreter version is not supported.
    #[error("CPython {version} is not supported (pyrometer reads CPython 3.8 to 3.15){hint}")]
    UnsupportedVersion {
        /// The version as found.
        version: String,
        /// Extra advice.
        hint: String,
    },
    /// A free-threaded build.
    #[error(
        "CPython {version} is a free-threaded (no-GIL) build, which pyrometer does not support yet"
    )]
    FreeThreaded {
        /// The version.
        version: String,
    },
    /// The debug offsets table failed validation.
    #[error("the interpreter's _Py_DebugOffsets table is invalid: {0}")]
    BadDebugOffsets(String),
    /// Data read from the target makes no sense (torn or corrupt read).
    #[error("inconsistent interpreter data: {0}")]
    Corrupt(&'static str),
    /// The interpreter is not initialized yet (or already finalized).
    #[error("the Python interpreter has no thread state yet (still starting, or shutting down)")]
    NotInitialized,
}
