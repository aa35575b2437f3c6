//! The sampling engine: a clock that keeps an absolute schedule, targets
//! (processes with a located interpreter), per-thread scheduler states, and
//! the accounting of samples that could not be read.
//!
//! Emits [`Sample`]s; knows nothing about aggregation or output formats.
#![deny(missing_docs)]

mod clock;
mod memory;
mod session;
mod target;
pub mod web;

pub use clock::{Clock, Tick};
pub use memory::{MemoryEvent, MemorySampler, MemoryStats};
pub use session::{Session, SessionEvents, SessionStats, DEFAULT_MEMORY_INTERVAL};
pub use target::{
    MemoryReading, Sample, SampleError, SampledFrame, Target, TargetError, ThreadState,
    ThreadSummary,
};
pub use web::{Category, SampledRequest};
