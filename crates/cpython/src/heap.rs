//! The interpreter's own heap: how much memory pymalloc holds in arenas
//! (`narenas_currently_allocated × ARENA_SIZE`), read from the allocator's
//! state. Where that state lives is per-version data
//! ([`crate::layout::HeapModel`]); what cannot be found is reported as
//! unavailable, never guessed.

use pyrometer_process::Memory;

use crate::layout::{HeapModel, Layout};

/// The most arenas believed possible (1 TiB of 1 MiB arenas): a larger
/// count is a wrong address or a torn read.
pub const MAX_ARENAS: u64 = 1 << 20;

/// The local symbol of the arena count in 3.8–3.11 (Objects/obmalloc.c).
pub const NARENAS_SYMBOL: &str = "narenas_currently_allocated";

/// Where the arena count of one interpreter is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeapLocation {
    /// The `size_t` count is at this address.
    Counter(u64),
    /// A pointer at `pointer` leads to the allocator state; the count is
    /// `offset` bytes into it.
    ThroughPointer {
        /// Address of the `struct _obmalloc_state *`.
        pointer: u64,
        /// Offset of the count in the state.
        offset: u64,
    },
    /// Why the heap size cannot be read in this interpreter.
    Unavailable(String),
}

impl HeapLocation {
    /// Where the count lives for `layout`, given `_PyRuntime`'s address and
    /// the address of the [`NARENAS_SYMBOL`] symbol if the binary has it.
    pub fn find(layout: &Layout, runtime: u64, narenas_symbol: Option<u64>) -> HeapLocation {
        match layout.heap {
            HeapModel::StaticSymbol => match narenas_symbol {
                Some(addr) => HeapLocation::Counter(addr),
                None => HeapLocation::Unavailable(format!(
                    "the interpreter's binary has no `{NARENAS_SYMBOL}` symbol (stripped of .symtab); \
                     RSS is still measured"
                )),
            },
            HeapModel::RuntimeInline { narenas } => match runtime.checked_add(narenas) {
                Some(addr) => HeapLocation::Counter(addr),
                None => HeapLocation::Unavailable("_PyRuntime address out of range".into()),
            },
            HeapModel::RuntimePointer { obmalloc, narenas } => match runtime.checked_add(obmalloc)
            {
                Some(pointer) => HeapLocation::ThroughPointer {
                    pointer,
                    offset: narenas,
                },
                None => HeapLocation::Unavailable("_PyRuntime address out of range".into()),
            },
            HeapModel::Unknown => HeapLocation::Unavailable(format!(
                "where pymalloc keeps its state in CPython {}.{} is not known to pyrometer",
                layout.version.major, layout.version.minor
            )),
        }
    }

    /// Whether a reading can be attempted at all.
    pub fn is_available(&self) -> bool {
        !matches!(self, HeapLocation::Unavailable(_))
    }
}

/// One reading of the pymalloc heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PymallocReading {
    /// Arenas in use.
    pub arenas: u64,
    /// `arenas × ARENA_SIZE`.
    pub bytes: u64,
}

/// Why a reading was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeapError {
    /// Not readable in this interpreter, for good.
    #[error("pymalloc heap size unavailable: {0}")]
    Unavailable(String),
    /// The read failed (the process exited, or memory moved).
    #[error("pymalloc state could not be read: {0}")]
    Read(String),
    /// The value read is not a plausible arena count: dropped.
    #[error("implausible pymalloc state ({0}); reading dropped")]
    Implausible(String),
}

/// Read the arena count at `location` and turn it into bytes.
pub fn read_pymalloc<M: Memory>(
    mem: &M,
    layout: &Layout,
    location: &HeapLocation,
) -> Result<PymallocReading, HeapError> {
    let counter = match location {
        HeapLocation::Unavailable(why) => return Err(HeapError::Unavailable(why.clone())),
        HeapLocation::Counter(addr) => *addr,
        HeapLocation::ThroughPointer { pointer, offset } => {
            let state = mem
                .read_u64(*pointer)
                .map_err(|e| HeapError::Read(e.to_string()))?;
            if state == 0 || state % 8 != 0 {
                return Err(HeapError::Implausible(format!(
                    "allocator state pointer {state:#x}"
                )));
            }
            state
                .checked_add(*offset)
                .ok_or_else(|| HeapError::Implausible(format!("state pointer {state:#x}")))?
        }
    };
    let arenas = mem
        .read_u64(counter)
        .map_err(|e| HeapError::Read(e.to_string()))?;
    if arenas > MAX_ARENAS {
        return Err(HeapError::Implausible(format!("{arenas} arenas")));
    }
    let bytes = arenas
        .checked_mul(layout.arena_size)
        .ok_or_else(|| HeapError::Implausible(format!("{arenas} arenas")))?;
    Ok(PymallocReading { arenas, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Version;
    use pyrometer_process::ImageMemory;

    fn layout(minor: u8) -> Layout {
        Layout::for_version(Version::new(3, minor, 0)).expect("known version")
    }

    #[test]
    fn static_symbol_versions_need_the_symbol() {
        for minor in 8..=11 {
            let l = layout(minor);
            assert_eq!(
                HeapLocation::find(&l, 0x1000, Some(0x2000)),
                HeapLocation::Counter(0x2000)
            );
            assert!(!HeapLocation::find(&l, 0x1000, None).is_available());
        }
        assert_eq!(layout(9).arena_size, 256 << 10);
        assert_eq!(layout(10).arena_size, 1 << 20);
    }

    #[test]
    fn reads_through_the_pointer_and_bounds_the_count() {
        let l = layout(13);
        let runtime = 0x10_0000u64;
        let HeapModel::RuntimePointer { obmalloc, narenas } = l.heap else {
            panic!("3.13 keeps a pointer");
        };
        let state = 0x40_0000u64;
        let mut mem = ImageMemory::new();
        mem.insert(runtime + obmalloc, state.to_le_bytes().to_vec());
        mem.insert(state + narenas, 7u64.to_le_bytes().to_vec());
        let loc = HeapLocation::find(&l, runtime, None);
        assert_eq!(
            read_pymalloc(&mem, &l, &loc),
            Ok(PymallocReading {
                arenas: 7,
                bytes: 7 << 20
            })
        );
        mem.write(state + narenas, &(MAX_ARENAS + 1).to_le_bytes());
        assert!(matches!(
            read_pymalloc(&mem, &l, &loc),
            Err(HeapError::Implausible(_))
        ));
        mem.write(runtime + obmalloc, &0u64.to_le_bytes());
        assert!(matches!(
            read_pymalloc(&mem, &l, &loc),
            Err(HeapError::Implausible(_))
        ));
        let unknown = Layout {
            heap: HeapModel::Unknown,
            ..l
        };
        assert!(matches!(
            read_pymalloc(&mem, &unknown, &HeapLocation::find(&unknown, runtime, None)),
            Err(HeapError::Unavailable(_))
        ));
    }
}
