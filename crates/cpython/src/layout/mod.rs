//! Per-version knowledge of CPython's memory layout, as data.
//!
//! One [`Layout`] describes everything the reader needs for one interpreter:
//! where fields are, and how the interpreter models frames, line tables,
//! integers and dictionaries. Layouts for 3.8–3.13 are static tables checked
//! against the installed interpreters' headers (`tests/offsets_match_headers.rs`);
//! 3.13+ can also be filled from CPython's own `_Py_DebugOffsets`. The single
//! dispatch point from a version to a layout is [`Layout::for_version`].

mod calls;
mod tables;

pub use calls::{CallOp, CallOps};
pub use tables::known_layout;

/// Each version's call instructions (3.13+ layouts from `_Py_DebugOffsets`
/// take theirs by minor).
pub use calls::{PY311 as CALLS_311, PY312 as CALLS_312, PY313 as CALLS_313, PY314 as CALLS_314};

/// A CPython version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// 3
    pub major: u8,
    /// 8..=15
    pub minor: u8,
    /// Patch level.
    pub micro: u8,
    /// Release level as in `PY_VERSION_HEX`: 0xA alpha, 0xB beta, 0xC candidate, 0xF final.
    pub level: u8,
}

impl Version {
    /// A final release.
    pub const fn new(major: u8, minor: u8, micro: u8) -> Self {
        Version {
            major,
            minor,
            micro,
            level: 0xF,
        }
    }
    /// Decode `PY_VERSION_HEX`.
    pub fn from_hex(hex: u64) -> Self {
        Version {
            major: ((hex >> 24) & 0xff) as u8,
            minor: ((hex >> 16) & 0xff) as u8,
            micro: ((hex >> 8) & 0xff) as u8,
            level: ((hex >> 4) & 0xf) as u8,
        }
    }
    /// `(major, minor)`.
    pub fn minor_pair(&self) -> (u8, u8) {
        (self.major, self.minor)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)?;
        match self.level {
            0xA => write!(f, "a"),
            0xB => write!(f, "b"),
            0xC => write!(f, "rc"),
            _ => Ok(()),
        }
    }
}

/// How a thread state leads to its innermost frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameRoot {
    /// 3.8–3.10: `PyThreadState.frame` is a `PyFrameObject*`.
    FrameObject {
        /// `offsetof(PyThreadState, frame)`
        frame: u64,
    },
    /// 3.11–3.12: `PyThreadState.cframe->current_frame`.
    CFrame {
        /// `offsetof(PyThreadState, cframe)`
        cframe: u64,
        /// `offsetof(_PyCFrame, current_frame)`
        current_frame: u64,
    },
    /// 3.13+: `PyThreadState.current_frame`.
    Direct {
        /// `offsetof(PyThreadState, current_frame)`
        current_frame: u64,
    },
}

/// 3.11+: a thread's data stack, the `_PyStackChunk`s where every frame
/// the thread itself owns (`FRAME_OWNED_BY_THREAD`) is allocated. A frame
/// pointer outside them is garbage or torn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataStack {
    /// `offsetof(PyThreadState, datastack_chunk)`: the newest chunk.
    pub chunk: u64,
    /// `offsetof(PyThreadState, datastack_top)`: the first free slot of the
    /// newest chunk (`None`: not known, e.g. from `_Py_DebugOffsets`).
    pub top: Option<u64>,
    /// `offsetof(PyThreadState, datastack_limit)`: the end of the newest chunk.
    pub limit: Option<u64>,
    /// `offsetof(_PyStackChunk, previous)`
    pub chunk_previous: u64,
    /// `offsetof(_PyStackChunk, size)`: the chunk's size in bytes, header included.
    pub chunk_size: u64,
    /// `offsetof(_PyStackChunk, data)`
    pub chunk_data: u64,
}

/// `_PyStackChunk`'s header, the same from 3.11 to 3.15 (`previous`,
/// `size`, `top`, then `data`); the thread-state offsets are per version.
pub const STACK_CHUNK: DataStack = DataStack {
    chunk: 0,
    top: None,
    limit: None,
    chunk_previous: 0,
    chunk_size: 8,
    chunk_data: 24,
};

/// The frame model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameModel {
    /// 3.8–3.10: heap `PyFrameObject`s linked by `f_back`.
    FrameObject {
        /// `offsetof(PyFrameObject, f_back)`
        back: u64,
        /// `offsetof(PyFrameObject, f_code)`
        code: u64,
        /// `offsetof(PyFrameObject, f_lasti)` (an `int`)
        lasti: u64,
        /// Bytes per unit of `f_lasti`: 1 on 3.8/3.9 (byte offset), 2 on 3.10 (code units).
        lasti_unit: u64,
        /// `offsetof(PyFrameObject, f_lineno)` (an `int`, valid only while tracing)
        lineno: u64,
        /// `offsetof(PyFrameObject, f_localsplus)`
        localsplus: u64,
    },
    /// 3.11+: `_PyInterpreterFrame`s linked by `previous`.
    Interpreter {
        /// `offsetof(_PyInterpreterFrame, previous)`
        previous: u64,
        /// `f_code` (3.11/3.12) or `f_executable` (3.13+)
        executable: u64,
        /// `prev_instr` (3.11/3.12) or `instr_ptr` (3.13+)
        instr_ptr: u64,
        /// Whether `instr_ptr` points at the previous code unit (3.11/3.12 `prev_instr`).
        instr_ptr_is_previous: bool,
        /// `offsetof(_PyInterpreterFrame, localsplus)`
        localsplus: u64,
        /// `offsetof(_PyInterpreterFrame, owner)` (a `char`)
        owner: u64,
        /// Owner values of frames that are not Python code (3.12+: the C-stack
        /// entry shim; 3.14+: the interpreter entry frame). Empty on 3.11.
        skip_owners: &'static [u8],
        /// Low bits of `f_executable` used as tags (3.14+: `Py_TAG_BITS` = 3).
        executable_tag_mask: u64,
        /// The instructions a caller stops on while a frame it pushed runs
        /// (`None`: not known for this version, and callers go unchecked).
        calls: Option<&'static CallOps>,
        /// 3.12+: `offsetof(_PyInterpreterFrame, return_offset)` (a `uint16_t`).
        return_offset: Option<u64>,
        /// 3.11: `offsetof(_PyInterpreterFrame, is_entry)` (a `bool`): the
        /// frame was entered from C.
        entry_flag: Option<u64>,
    },
}

/// How line numbers are encoded in code objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTableFormat {
    /// 3.8–3.9: `co_lnotab`, byte offsets.
    Lnotab,
    /// 3.10: the PEP 626 `co_linetable`.
    Linetable310,
    /// 3.11+: the PEP 657 location table.
    Locations311,
}

/// How an `int`'s size and sign are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongModel {
    /// ≤ 3.11: `ob_size` holds the signed digit count.
    SignedSize {
        /// `offsetof(PyVarObject, ob_size)`
        ob_size: u64,
    },
    /// 3.12+: `lv_tag` = ndigits << 3 | sign (0 positive, 1 zero, 2 negative).
    Tagged {
        /// `offsetof(PyLongObject, long_value.lv_tag)`
        lv_tag: u64,
    },
}

/// The dict keys object (`PyDictKeysObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DictKeysModel {
    /// 3.8–3.10: `dk_size` (a `Py_ssize_t`), entries always `{hash, key, value}`.
    Sized {
        /// `offsetof(PyDictKeysObject, dk_size)`
        dk_size: u64,
        /// `offsetof(PyDictKeysObject, dk_nentries)`
        dk_nentries: u64,
        /// `offsetof(PyDictKeysObject, dk_indices)`
        dk_indices: u64,
    },
    /// 3.11+: `dk_log2_size`, `dk_log2_index_bytes`, `dk_kind` (bytes);
    /// unicode-keyed dicts store `{key, value}` entries.
    Log2 {
        /// `offsetof(PyDictKeysObject, dk_log2_size)` (u8)
        dk_log2_size: u64,
        /// `offsetof(PyDictKeysObject, dk_log2_index_bytes)` (u8)
        dk_log2_index_bytes: u64,
        /// `offsetof(PyDictKeysObject, dk_kind)` (u8: 0 general, 1 unicode, 2 split)
        dk_kind: u64,
        /// `offsetof(PyDictKeysObject, dk_nentries)`
        dk_nentries: u64,
        /// `offsetof(PyDictKeysObject, dk_indices)`
        dk_indices: u64,
    },
}

/// Where an instance keeps its attribute dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceDictModel {
    /// ≤ 3.10: at `obj + tp_dictoffset` (a negative offset counts from the end).
    DictOffset,
    /// 3.11: with `Py_TPFLAGS_MANAGED_DICT`, the dict pointer is at `obj - 24`
    /// and the split values pointer at `obj - 32`.
    Managed311,
    /// 3.12: a tagged `PyDictOrValues` at `obj - 24`; with the low bit set it
    /// holds `values - 1`, so the values array is at `raw + 1`.
    DictOrValues312,
    /// 3.13+: dict pointer at `obj - 24`; with `Py_TPFLAGS_INLINE_VALUES`
    /// the values live at `obj + tp_basicsize` behind an 8-byte header
    /// (capacity, size, embedded, valid, padding).
    InlineValues313,
}

/// Every offset and model the reader needs for one interpreter version.
/// Offsets are byte offsets inside the named C struct, x86-64 release builds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Layout {
    /// The version this layout was made for.
    pub version: Version,
    /// Built with `Py_GIL_DISABLED`.
    pub free_threaded: bool,

    // _PyRuntimeState
    pub runtime_interpreters_head: u64,
    /// `offsetof(_PyRuntimeState, ceval.gil)` for ≤ 3.11 (the GIL is runtime-wide).
    pub runtime_gil: Option<u64>,

    // PyInterpreterState
    pub interp_next: u64,
    pub interp_threads_head: u64,
    /// `interp->modules` (≤3.11) or `interp->imports.modules` (3.12+): `sys.modules`.
    pub interp_modules: u64,
    /// 3.12: `offsetof(PyInterpreterState, ceval.gil)`, a pointer to the GIL state.
    pub interp_gil_ptr: Option<u64>,
    /// 3.13+: `offsetof(PyInterpreterState, _gil)`, the GIL state inline.
    pub interp_gil_inline: Option<u64>,
    /// 3.14+: `_code_object_generation`, bumped whenever a code object is
    /// freed: cached code objects are dropped when it changes.
    pub interp_code_generation: Option<u64>,

    // struct _gil_runtime_state
    pub gil_last_holder: u64,
    pub gil_locked: u64,

    // PyThreadState
    pub tstate_next: u64,
    pub tstate_interp: u64,
    pub tstate_thread_id: u64,
    /// 3.11+: the OS thread id. Absent before: derived from the pthread struct.
    pub tstate_native_thread_id: Option<u64>,
    pub frame_root: FrameRoot,
    /// 3.15+: `base_frame`, the sentinel at the bottom of every thread's
    /// frame chain: a walk that does not end there is torn.
    pub tstate_base_frame: Option<u64>,
    /// 3.11+: the thread's data stack, to reject frames outside it.
    pub tstate_datastack: Option<DataStack>,
    /// 3.15+: `holds_gil` (an int), per thread.
    pub tstate_holds_gil: Option<u64>,
    /// 3.15+: `gil_requested` (an int): the thread waits for the GIL.
    pub tstate_gil_requested: Option<u64>,

    pub frame: FrameModel,

    // PyCodeObject
    pub code_filename: u64,
    pub code_name: u64,
    /// 3.11+
    pub code_qualname: Option<u64>,
    /// `co_lnotab` (3.8/3.9), `co_linetable` (3.10+)
    pub code_linetable: u64,
    pub code_firstlineno: u64,
    pub code_argcount: u64,
    pub code_flags: u64,
    /// `co_varnames` (≤3.10) or `co_localsplusnames` (3.11+)
    pub code_varnames: u64,
    /// 3.11+: `co_localspluskinds` (bytes)
    pub code_localspluskinds: Option<u64>,
    /// ≤3.10: `co_nlocals` (int)
    pub code_nlocals: Option<u64>,
    /// ≤3.10: `co_cellvars` (tuple)
    pub code_cellvars: Option<u64>,
    /// ≤3.10: `co_freevars` (tuple)
    pub code_freevars: Option<u64>,
    /// 3.11+: `co_code_adaptive`, the inline bytecode
    pub code_code_adaptive: Option<u64>,
    pub line_table: LineTableFormat,

    // PyObject / PyTypeObject / PyHeapTypeObject
    pub ob_type: u64,
    pub type_tp_name: u64,
    pub type_tp_flags: u64,
    pub type_tp_basicsize: u64,
    pub type_tp_dictoffset: u64,
    /// `tp_members` (a `PyMemberDef*`: `__slots__` of heap types).
    pub type_tp_members: u64,
    /// `tp_base`.
    pub type_tp_base: u64,
    /// `offsetof(PyHeapTypeObject, ht_cached_keys)`: the shared keys of
    /// instances' split dicts (every supported version)
    pub heap_type_cached_keys: Option<u64>,

    // PyASCIIObject / PyCompactUnicodeObject
    pub unicode_length: u64,
    pub unicode_state: u64,
    /// `sizeof(PyASCIIObject)`: data of compact ASCII strings
    pub unicode_ascii_data: u64,
    /// `sizeof(PyCompactUnicodeObject)`: data of other compact strings
    pub unicode_compact_data: u64,

    // PyBytesObject
    pub bytes_size: u64,
    pub bytes_sval: u64,
    // PyLongObject
    pub long_model: LongModel,
    pub long_digit: u64,
    // PyFloatObject
    pub float_fval: u64,
    // PyTupleObject
    pub tuple_size: u64,
    pub tuple_item: u64,
    // PyListObject
    pub list_size: u64,
    pub list_item: u64,
    // PyDictObject
    pub dict_used: u64,
    pub dict_keys: u64,
    pub dict_values: u64,
    pub dict_keys_model: DictKeysModel,
    pub instance_dict: InstanceDictModel,
    // pymalloc (Objects/obmalloc.c)
    /// Where the count of arenas in use lives.
    pub heap: HeapModel,
    /// `ARENA_SIZE`: 256 KiB before 3.10, 1 MiB from 3.10 (64-bit builds
    /// with the radix tree use large arenas).
    pub arena_size: u64,
    // asyncio: how a request awaiting a thread pool is reached from the
    // worker thread (`_asynciomodule.c` is not a public header: measured on
    // each interpreter, checked live by crates/cpython/tests/threadpool_live.rs).
    /// `offsetof(TaskObj, task_coro)` of the C `_asyncio.Task`; `None`
    /// where not known (the request is then named without its scope).
    pub asyncio_task_coro: Option<u64>,
    /// Where a coroutine object keeps its frame.
    pub coro_frame: CoroFrame,
}

/// Where pymalloc keeps `narenas_currently_allocated`, the number of
/// arenas in use (each `ARENA_SIZE` bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapModel {
    /// 3.8–3.11: a file-static variable of Objects/obmalloc.c, found by its
    /// local symbol in `.symtab` (absent from stripped binaries).
    StaticSymbol,
    /// 3.12: in the main interpreter's inline `obmalloc` state, itself
    /// inline in `_PyRuntime`: the count is at `_PyRuntime + narenas`.
    RuntimeInline {
        /// `offsetof(_PyRuntimeState, _main_interpreter)` +
        /// `offsetof(PyInterpreterState, obmalloc.mgmt.narenas_currently_allocated)`
        narenas: u64,
    },
    /// 3.13: the main interpreter's `obmalloc` is a pointer to the state.
    RuntimePointer {
        /// `offsetof(_PyRuntimeState, _main_interpreter)` +
        /// `offsetof(PyInterpreterState, obmalloc)`
        obmalloc: u64,
        /// `offsetof(struct _obmalloc_state, mgmt.narenas_currently_allocated)`
        narenas: u64,
    },
    /// Not known for this version (layouts built from debug offsets of
    /// newer versions: `_Py_DebugOffsets` does not describe obmalloc).
    Unknown,
}

/// Where a coroutine (`PyCoroObject`) keeps its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoroFrame {
    /// 3.8–3.10: `cr_frame`, a pointer to a `PyFrameObject` at this offset.
    Pointer(u64),
    /// 3.11+: `cr_iframe`, an `_PyInterpreterFrame` inline at this offset.
    Inline(u64),
    /// Not known for this version.
    Unknown,
}

impl Layout {
    /// The layout for a version, the one place where versions are dispatched.
    /// `None` when pyrometer does not know the version.
    pub fn for_version(version: Version) -> Option<Layout> {
        known_layout(version)
    }

    /// Whether frames are `_PyInterpreterFrame`s (3.11+).
    pub fn has_interpreter_frames(&self) -> bool {
        matches!(self.frame, FrameModel::Interpreter { .. })
    }
}
