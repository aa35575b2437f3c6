//! The CPython interpreter model of pyrometer: finding the interpreter in a
//! process, per-version layouts, walking threads and frames, decoding line
//! tables and reading objects. Generic over a memory source
//! ([`pyrometer_process::Memory`]) so live processes and synthetic images are
//! read by the same code. Knows nothing about time or output formats.
#![deny(missing_docs)]

pub mod cache;
pub mod callsite;
pub mod debug_offsets;
pub mod discover;
mod error;
pub mod heap;
pub mod layout;
pub mod linetable;
pub mod objects;
mod remote;
pub mod request;
pub mod stack;
pub mod supported;
pub mod synthetic;

pub use discover::{locate, Interpreter};
pub use error::CpythonError;
pub use heap::{read_pymalloc, HeapError, HeapLocation, PymallocReading};
pub use layout::{Layout, Version};
pub use request::{RequestInfo, RequestKind};
pub use stack::{top_frame_of, CodeInfo, Frame, StackReader, ThreadStack};
