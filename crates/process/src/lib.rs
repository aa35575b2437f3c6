//! OS access for pyrometer: a process's memory map, its binaries' symbols,
//! remote memory reads, threads and their scheduler state, children.
//!
//! This crate knows nothing about Python.
#![deny(missing_docs)]

mod cache;
mod elf;
mod error;
mod maps;
mod memory;
mod namespace;
mod process;
mod ptrace;
mod sched;
mod schedstat;
mod statm;
#[cfg(test)]
mod testutil;

pub use cache::{CacheStats, PageCache, PAGE};
pub use elf::{Binary, Section};
pub use error::{MemoryError, ProcessError};
pub use maps::{parse_maps, MapEntry};
pub use memory::{ImageMemory, Memory, Settled, Transient};
pub use namespace::{parse_nspid, NsTidMap};
pub use process::{stat_fields, Process, SchedState};
pub use ptrace::StoppedThreads;
pub use sched::ThreadStatReader;
pub use schedstat::{parse_schedstat, SchedStat, SchedstatReader, ThreadCounter};
pub use statm::{parse_statm_resident, StatmReader};
