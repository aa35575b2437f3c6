//! Synthetic interpreter images, for tests of versions that cannot run on
//! the test machine (3.14, 3.15) and of corrupt data no real interpreter
//! produces.
//!
//! [`build`] lays out, in a [`pyrometer_process::ImageMemory`], what the
//! reader follows in a live process of a 3.13+ interpreter: a `_PyRuntime`
//! starting with a `_Py_DebugOffsets` table, an interpreter state with its
//! GIL, thread states, chains of `_PyInterpreterFrame`s (including frames
//! owned by the interpreter, which are not Python code), code objects with
//! `str` names, a `bytes` location table and inline bytecode, and the type
//! objects they point at (`code`, `str`, `bytes`, `tuple`, `NoneType`).
//! Every field is placed at the offset the table announces, so the reader
//! is exercised through the table only.
//!
//! [`debug_values`] gives real-shaped tables: 3.13 is the table of a real
//! CPython 3.13.0 (x86-64 Linux); 3.14 and 3.15 are modeled on tables
//! recorded from CPython 3.14.6 and 3.15.0rc1 (x86-64), with the
//! `unsigned long` fields of `PyThreadState` at their 8-byte LP64 width.
//!
//! This is test-support code: it panics on a malformed [`ImageSpec`].

use std::collections::{BTreeMap, HashMap};

use pyrometer_process::ImageMemory;

use crate::debug_offsets;
use crate::layout::Version;

/// `FRAME_OWNED_BY_THREAD`.
pub const OWNED_BY_THREAD: u8 = 0;
/// `FRAME_OWNED_BY_GENERATOR`.
pub const OWNED_BY_GENERATOR: u8 = 1;
/// 3.13 `FRAME_OWNED_BY_CSTACK`; 3.14/3.15 `FRAME_OWNED_BY_INTERPRETER`.
pub const OWNED_BY_INTERPRETER_OR_CSTACK: u8 = 3;
/// 3.14 `FRAME_OWNED_BY_CSTACK`.
pub const OWNED_BY_CSTACK_314: u8 = 4;

/// `Py_TAG_REFCNT` (3.14+): the low bit of a `_PyStackRef` that does not own
/// a reference.
pub const TAG_REFCNT: u64 = 1;

// Type flags (`Include/object.h`).
const TPFLAGS_TUPLE_SUBCLASS: u64 = 1 << 26;
const TPFLAGS_BYTES_SUBCLASS: u64 = 1 << 27;
const TPFLAGS_UNICODE_SUBCLASS: u64 = 1 << 28;
const TPFLAGS_TYPE_SUBCLASS: u64 = 1 << 31;

/// Where the image's allocations start: a typical x86-64 heap address.
const IMAGE_BASE: u64 = 0x7f3a_1000_0000;

/// A real-shaped debug offsets table (`section.member` → value) for 3.13,
/// 3.14 or 3.15; `None` for other minors.
pub fn debug_values(minor: u8) -> Option<HashMap<&'static str, u64>> {
    let common_objects: &[(&str, u64)] = &[
        ("pyobject.size", 16),
        ("pyobject.ob_type", 8),
        ("type_object.tp_name", 24),
        ("type_object.tp_repr", 88),
        ("type_object.tp_flags", 168),
        ("list_object.size", 40),
        ("list_object.ob_item", 24),
        ("list_object.ob_size", 16),
        ("dict_object.size", 48),
        ("dict_object.ma_keys", 32),
        ("dict_object.ma_values", 40),
        ("float_object.size", 24),
        ("float_object.ob_fval", 16),
        ("long_object.size", 32),
        ("long_object.lv_tag", 16),
        ("long_object.ob_digit", 24),
        ("bytes_object.size", 40),
        ("bytes_object.ob_size", 16),
        ("bytes_object.ob_sval", 32),
        ("unicode_object.size", 64),
        ("unicode_object.state", 32),
        ("unicode_object.length", 16),
        ("unicode_object.asciiobject_size", 40),
        ("thread_state.prev", 0),
        ("thread_state.next", 8),
        ("thread_state.interp", 16),
        ("thread_state.current_frame", 72),
        ("thread_state.status", 32),
        ("interpreter_frame.previous", 8),
        ("interpreter_frame.executable", 0),
        ("interpreter_frame.instr_ptr", 56),
        ("code_object.filename", 112),
        ("code_object.name", 120),
        ("code_object.qualname", 128),
        ("code_object.linetable", 136),
        ("code_object.firstlineno", 68),
        ("code_object.argcount", 52),
        ("code_object.localsplusnames", 96),
        ("code_object.localspluskinds", 104),
        ("interpreter_state.ceval_gil", 16),
        ("interpreter_state.gil_runtime_state_enabled", 0),
    ];
    // Added in 3.14 and unchanged in 3.15.
    let since_314: &[(&str, u64)] = &[
        ("interpreter_frame.size", 88),
        ("interpreter_frame.localsplus", 80),
        ("interpreter_frame.owner", 74),
        ("interpreter_frame.stackpointer", 64),
        ("interpreter_frame.tlbc_index", 0),
        ("code_object.size", 216),
        ("code_object.co_code_adaptive", 208),
        ("code_object.co_tlbc", 0),
        ("interpreter_state.tlbc_generation", 0),
        ("tuple_object.size", 40),
        ("tuple_object.ob_item", 32),
        ("tuple_object.ob_size", 16),
        ("set_object.size", 200),
        ("set_object.used", 24),
        ("set_object.table", 40),
        ("set_object.mask", 32),
        ("gen_object.size", 160),
        ("gen_object.gi_name", 24),
        ("gen_object.gi_iframe", 72),
        ("gen_object.gi_frame_state", 67),
        ("llist_node.next", 0),
        ("llist_node.prev", 8),
        ("debugger_support.eval_breaker", 24),
        ("debugger_support.debugger_pending_call", 0),
        ("debugger_support.debugger_script_path", 4),
        ("debugger_support.debugger_script_path_size", 512),
    ];
    let specific: &[(&str, u64)] = match minor {
        // CPython 3.13.0, x86-64 Linux, read from a live `_PyRuntime`.
        13 => &[
            ("runtime_state.size", 283_320),
            ("runtime_state.finalizing", 608),
            ("runtime_state.interpreters_head", 632),
            ("interpreter_state.size", 194_968),
            ("interpreter_state.id", 7272),
            ("interpreter_state.next", 7264),
            ("interpreter_state.threads_head", 7344),
            ("interpreter_state.gc", 7400),
            ("interpreter_state.imports_modules", 7656),
            ("interpreter_state.sysdict", 7640),
            ("interpreter_state.builtins", 7648),
            ("interpreter_state.gil_runtime_state", 7752),
            ("interpreter_state.gil_runtime_state_locked", 7768),
            ("interpreter_state.gil_runtime_state_holder", 7760),
            ("thread_state.size", 304),
            ("thread_state.thread_id", 152),
            ("thread_state.native_thread_id", 160),
            ("thread_state.datastack_chunk", 232),
            ("interpreter_frame.size", 80),
            ("interpreter_frame.localsplus", 72),
            ("interpreter_frame.owner", 70),
            ("code_object.size", 208),
            ("code_object.co_code_adaptive", 200),
            ("type_object.size", 416),
            ("tuple_object.size", 32),
            ("tuple_object.ob_item", 24),
            ("tuple_object.ob_size", 16),
            ("gc.size", 240),
            ("gc.collecting", 200),
        ],
        14 => &[
            ("runtime_state.size", 315_600),
            ("runtime_state.finalizing", 784),
            ("runtime_state.interpreters_head", 808),
            ("interpreter_state.size", 225_672),
            ("interpreter_state.id", 7280),
            ("interpreter_state.next", 7272),
            ("interpreter_state.threads_head", 7336),
            ("interpreter_state.threads_main", 7352),
            ("interpreter_state.gc", 7400),
            ("interpreter_state.imports_modules", 7680),
            ("interpreter_state.sysdict", 7664),
            ("interpreter_state.builtins", 7672),
            ("interpreter_state.gil_runtime_state", 7768),
            ("interpreter_state.gil_runtime_state_locked", 7784),
            ("interpreter_state.gil_runtime_state_holder", 7776),
            ("interpreter_state.code_object_generation", 7824),
            ("thread_state.size", 832),
            ("thread_state.thread_id", 152),
            ("thread_state.native_thread_id", 160),
            ("thread_state.datastack_chunk", 232),
            ("type_object.size", 416),
            ("gc.size", 264),
            ("gc.collecting", 192),
            ("debugger_support.remote_debugger_support", 304),
            ("debugger_support.remote_debugging_enabled", 7904),
        ],
        15 => &[
            ("runtime_state.size", 345_248),
            ("runtime_state.finalizing", 912),
            ("runtime_state.interpreters_head", 936),
            ("interpreter_state.size", 226_040),
            ("interpreter_state.id", 7272),
            ("interpreter_state.next", 7264),
            ("interpreter_state.threads_head", 7328),
            ("interpreter_state.threads_main", 7344),
            ("interpreter_state.gc", 7392),
            ("interpreter_state.imports_modules", 7584),
            ("interpreter_state.sysdict", 7568),
            ("interpreter_state.builtins", 7576),
            ("interpreter_state.gil_runtime_state", 7720),
            ("interpreter_state.gil_runtime_state_locked", 7736),
            ("interpreter_state.gil_runtime_state_holder", 7728),
            ("interpreter_state.code_object_generation", 7776),
            ("thread_state.size", 888),
            ("thread_state.base_frame", 80),
            ("thread_state.last_profiled_frame", 88),
            ("thread_state.last_profiled_frame_seq", 96),
            ("thread_state.thread_id", 176),
            ("thread_state.native_thread_id", 184),
            ("thread_state.datastack_chunk", 256),
            ("thread_state.holds_gil", 36),
            ("thread_state.gil_requested", 40),
            ("thread_state.current_exception", 136),
            ("thread_state.exc_state", 288),
            ("err_stackitem.exc_value", 0),
            ("type_object.size", 424),
            ("type_object.tp_basicsize", 32),
            ("type_object.tp_dictoffset", 288),
            ("heap_type_object.size", 944),
            ("heap_type_object.ht_cached_keys", 888),
            ("unicode_object.compactunicodeobject_size", 56),
            ("gc.size", 176),
            ("gc.collecting", 112),
            ("gc.frame", 120),
            ("gc.generation_stats_size", 1112),
            ("gc.generation_stats", 104),
            ("debugger_support.remote_debugger_support", 344),
            ("debugger_support.remote_debugging_enabled", 7856),
        ],
        _ => return None,
    };
    let mut values: HashMap<&'static str, u64> = HashMap::new();
    for (k, v) in common_objects {
        values.insert(k, *v);
    }
    if minor >= 14 {
        for (k, v) in since_314 {
            values.insert(k, *v);
        }
    }
    for (k, v) in specific {
        values.insert(k, *v);
    }
    Some(values)
}

/// Compile a 3.11+ location table (`co_linetable`) from `(code units, line
/// delta)` pairs: each pair covers that many code units, on the line of the
/// previous pair plus the delta (the first pair's delta counts from
/// `co_firstlineno`). Entries use the "no column" form (code 13, a signed
/// varint line delta) and cover at most 8 code units; longer pairs are
/// split, the continuation entries with a delta of 0.
pub fn compile_linetable(pairs: &[(u32, i32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(units, delta) in pairs {
        let mut left = units;
        let mut d = delta;
        while left > 0 {
            let n = left.min(8);
            out.push(0x80 | (13 << 3) | (n as u8 - 1));
            write_signed_varint(&mut out, d);
            d = 0;
            left -= n;
        }
    }
    out
}

/// The line CPython reports for code unit `unit` of a code object whose
/// table was compiled by [`compile_linetable`] from `pairs`.
pub fn expected_line(first_line: i32, pairs: &[(u32, i32)], unit: u32) -> Option<i32> {
    let mut line = first_line;
    let mut start = 0u32;
    for &(units, delta) in pairs {
        line += delta;
        if unit < start + units {
            return Some(line);
        }
        start += units;
    }
    None
}

fn write_signed_varint(out: &mut Vec<u8>, v: i32) {
    let mut u = if v < 0 {
        ((v.unsigned_abs()) << 1) | 1
    } else {
        (v as u32) << 1
    };
    while u >= 64 {
        out.push(0x40 | (u & 63) as u8);
        u >>= 6;
    }
    out.push(u as u8);
}

/// One code object of the image.
#[derive(Debug, Clone)]
pub struct CodeSpec {
    /// `co_name`.
    pub name: String,
    /// `co_qualname`.
    pub qualname: String,
    /// `co_filename`.
    pub filename: String,
    /// `co_firstlineno`.
    pub first_line: i32,
    /// `(code units, line delta)` pairs of the location table (see
    /// [`compile_linetable`]); their units are the bytecode's length.
    pub lines: Vec<(u32, i32)>,
    /// `co_argcount`.
    pub argcount: i32,
    /// `co_localsplusnames`.
    pub varnames: Vec<String>,
}

impl CodeSpec {
    /// A code object named `qualname` (its last dotted part is `co_name`).
    pub fn new(qualname: &str, filename: &str, first_line: i32, lines: &[(u32, i32)]) -> Self {
        CodeSpec {
            name: qualname.rsplit('.').next().unwrap_or(qualname).to_string(),
            qualname: qualname.to_string(),
            filename: filename.to_string(),
            first_line,
            lines: lines.to_vec(),
            argcount: 0,
            varnames: Vec::new(),
        }
    }

    /// Length of the bytecode, in code units.
    pub fn units(&self) -> u32 {
        self.lines.iter().map(|(u, _)| *u).sum::<u32>().max(1)
    }

    /// The line of code unit `unit`.
    pub fn line_at(&self, unit: u32) -> Option<i32> {
        expected_line(self.first_line, &self.lines, unit)
    }
}

/// One `_PyInterpreterFrame`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSpec {
    /// A frame running code object `code` (an index into
    /// [`ImageSpec::codes`]) at code unit `unit`. `tag` is or-ed into
    /// `f_executable` (3.14+ stack-reference tag bits; keep 0 on 3.13).
    Python {
        /// Index of the code object.
        code: usize,
        /// Instruction pointer, in code units from the start of the bytecode.
        unit: u32,
        /// `owner` (thread or generator).
        owner: u8,
        /// Tag bits of `f_executable`.
        tag: u64,
    },
    /// A frame owned by the interpreter or the C stack: not Python code and
    /// skipped by the reader. `code` optionally points it at a real code
    /// object (so that only the owner tells it apart); otherwise its
    /// executable is `None`.
    Shim {
        /// `owner`.
        owner: u8,
        /// Optional code object.
        code: Option<usize>,
    },
}

impl FrameSpec {
    /// A thread-owned Python frame at `unit`, untagged.
    pub fn py(code: usize, unit: u32) -> Self {
        FrameSpec::Python {
            code,
            unit,
            owner: OWNED_BY_THREAD,
            tag: 0,
        }
    }
}

/// One thread state.
#[derive(Debug, Clone)]
pub struct ThreadSpec {
    /// `thread_id` (the pthread id, `threading.get_ident()`).
    pub thread_id: u64,
    /// `native_thread_id` (the OS thread id).
    pub native_id: u64,
    /// Frames, innermost first.
    pub frames: Vec<FrameSpec>,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// `PY_VERSION_HEX` written into the table.
    pub hex_version: u64,
    /// `_Py_DebugOffsets.free_threaded`.
    pub free_threaded: bool,
    /// The table's values (`section.member` → value); also where the
    /// builder places every field.
    pub offsets: HashMap<&'static str, u64>,
    /// Code objects.
    pub codes: Vec<CodeSpec>,
    /// Thread states, in `threads.head` order (head first).
    pub threads: Vec<ThreadSpec>,
    /// Index of the thread holding the GIL (`None`: GIL released).
    pub gil_holder: Option<usize>,
    /// Indexes of threads waiting for the GIL (3.15 `gil_requested`).
    pub gil_waiters: Vec<usize>,
    /// 3.15: end every thread's chain with a sentinel base frame (owned by
    /// the interpreter) that `thread_state.base_frame` points at.
    pub base_frames: bool,
}

impl ImageSpec {
    /// An empty spec for a final release of `version`'s minor, with the
    /// real-shaped table of [`debug_values`].
    ///
    /// # Panics
    /// On a minor without a table (only 3.13–3.15 have one).
    pub fn new(version: Version) -> Self {
        let offsets = debug_values(version.minor).expect("3.13, 3.14 or 3.15");
        ImageSpec {
            hex_version: (version.major as u64) << 24
                | (version.minor as u64) << 16
                | (version.micro as u64) << 8
                | (version.level as u64) << 4,
            free_threaded: false,
            offsets,
            codes: Vec::new(),
            threads: Vec::new(),
            gil_holder: None,
            gil_waiters: Vec::new(),
            base_frames: version.minor >= 15,
        }
    }

    fn off(&self, name: &str) -> u64 {
        *self
            .offsets
            .get(name)
            .unwrap_or_else(|| panic!("synthetic table lacks {name}"))
    }

    fn has(&self, name: &str) -> bool {
        self.offsets.contains_key(name)
    }
}

/// A built image and where things are in it.
#[derive(Debug, Clone)]
pub struct Image {
    /// The address space.
    pub memory: ImageMemory,
    /// `&_PyRuntime`.
    pub runtime: u64,
    /// The interpreter state.
    pub interp: u64,
    /// `&PyCode_Type`.
    pub code_type: u64,
    /// Thread states, in spec order.
    pub tstates: Vec<u64>,
    /// Frame addresses per thread, innermost first, as in the spec (the
    /// base frame, when there is one, is not included).
    pub frames: Vec<Vec<u64>>,
    /// The base frame of each thread (3.15).
    pub base_frames: Vec<Option<u64>>,
    /// Code object addresses, in spec order.
    pub codes: Vec<u64>,
}

/// Sparse memory being laid out: regions by start address.
struct Builder {
    regions: BTreeMap<u64, Vec<u8>>,
    next: u64,
}

impl Builder {
    fn new() -> Self {
        Builder {
            regions: BTreeMap::new(),
            next: IMAGE_BASE,
        }
    }

    /// A zeroed region of `size` bytes, 64-aligned, with a gap after it so
    /// that no read runs from one object into the next.
    fn alloc(&mut self, size: u64) -> u64 {
        let addr = self.next;
        self.regions.insert(addr, vec![0; size.max(8) as usize]);
        self.next = (addr + size.max(8) + 64 + 63) & !63;
        addr
    }

    fn write(&mut self, addr: u64, bytes: &[u8]) {
        let (start, region) = self
            .regions
            .range_mut(..=addr)
            .next_back()
            .expect("write inside the image");
        let off = (addr - start) as usize;
        region[off..off + bytes.len()].copy_from_slice(bytes);
    }

    fn u64(&mut self, addr: u64, v: u64) {
        self.write(addr, &v.to_le_bytes());
    }

    fn u32(&mut self, addr: u64, v: u32) {
        self.write(addr, &v.to_le_bytes());
    }

    fn c_string(&mut self, s: &str) -> u64 {
        let a = self.alloc(s.len() as u64 + 1);
        self.write(a, s.as_bytes());
        a
    }

    fn finish(self) -> ImageMemory {
        let mut mem = ImageMemory::new();
        for (addr, bytes) in self.regions {
            mem.insert(addr, bytes);
        }
        mem
    }
}

/// Type objects of the image.
struct Types {
    str_: u64,
    bytes: u64,
    tuple: u64,
    code: u64,
    none_obj: u64,
}

fn make_type(b: &mut Builder, spec: &ImageSpec, meta: u64, name: &str, flags: u64) -> u64 {
    let t = b.alloc(spec.off("type_object.size"));
    let name_ptr = b.c_string(name);
    b.u64(t, 1);
    if meta != 0 {
        b.u64(t + spec.off("pyobject.ob_type"), meta);
    }
    b.u64(t + spec.off("type_object.tp_name"), name_ptr);
    b.u64(t + spec.off("type_object.tp_flags"), flags);
    t
}

fn make_types(b: &mut Builder, spec: &ImageSpec) -> Types {
    let type_type = make_type(b, spec, 0, "type", TPFLAGS_TYPE_SUBCLASS);
    b.u64(type_type + spec.off("pyobject.ob_type"), type_type);
    let none_type = make_type(b, spec, type_type, "NoneType", 0);
    let none_obj = b.alloc(spec.off("pyobject.size"));
    b.u64(none_obj, 1);
    b.u64(none_obj + spec.off("pyobject.ob_type"), none_type);
    Types {
        str_: make_type(b, spec, type_type, "str", TPFLAGS_UNICODE_SUBCLASS),
        bytes: make_type(b, spec, type_type, "bytes", TPFLAGS_BYTES_SUBCLASS),
        tuple: make_type(b, spec, type_type, "tuple", TPFLAGS_TUPLE_SUBCLASS),
        code: make_type(b, spec, type_type, "code", 0),
        none_obj,
    }
}

/// A compact `str`: ASCII data after `PyASCIIObject`, other kinds after
/// `PyCompactUnicodeObject`.
fn make_str(b: &mut Builder, spec: &ImageSpec, types: &Types, s: &str) -> u64 {
    let cps: Vec<u32> = s.chars().map(u32::from).collect();
    let max = cps.iter().copied().max().unwrap_or(0);
    let ascii = max < 0x80;
    let kind: u32 = if max < 0x100 {
        1
    } else if max < 0x1_0000 {
        2
    } else {
        4
    };
    let header = if ascii {
        spec.off("unicode_object.asciiobject_size")
    } else if spec.has("unicode_object.compactunicodeobject_size") {
        spec.off("unicode_object.compactunicodeobject_size")
    } else {
        56
    };
    let data_len = (cps.len() as u64 + 1) * kind as u64;
    let o = b.alloc(header + data_len);
    b.u64(o, 1);
    b.u64(o + spec.off("pyobject.ob_type"), types.str_);
    b.u64(o + spec.off("unicode_object.length"), cps.len() as u64);
    // interned:2 = 0, kind:3, compact:1 = 1, ascii:1.
    let state = (kind << 2) | (1 << 5) | if ascii { 1 << 6 } else { 0 };
    b.u32(o + spec.off("unicode_object.state"), state);
    let mut data = Vec::with_capacity(data_len as usize);
    for c in &cps {
        data.extend_from_slice(&c.to_le_bytes()[..kind as usize]);
    }
    b.write(o + header, &data);
    o
}

fn make_bytes(b: &mut Builder, spec: &ImageSpec, types: &Types, data: &[u8]) -> u64 {
    let sval = spec.off("bytes_object.ob_sval");
    let o = b.alloc(sval + data.len() as u64 + 1);
    b.u64(o, 1);
    b.u64(o + spec.off("pyobject.ob_type"), types.bytes);
    b.u64(o + spec.off("bytes_object.ob_size"), data.len() as u64);
    b.write(o + sval, data);
    o
}

fn make_tuple(b: &mut Builder, spec: &ImageSpec, types: &Types, items: &[u64]) -> u64 {
    let item = spec.off("tuple_object.ob_item");
    let o = b.alloc(item + 8 * items.len() as u64);
    b.u64(o, 1);
    b.u64(o + spec.off("pyobject.ob_type"), types.tuple);
    b.u64(o + spec.off("tuple_object.ob_size"), items.len() as u64);
    for (i, p) in items.iter().enumerate() {
        b.u64(o + item + 8 * i as u64, *p);
    }
    o
}

fn make_code(b: &mut Builder, spec: &ImageSpec, types: &Types, c: &CodeSpec) -> u64 {
    let adaptive = spec.off("code_object.co_code_adaptive");
    let o = b.alloc(adaptive + 2 * c.units() as u64);
    let filename = make_str(b, spec, types, &c.filename);
    let name = make_str(b, spec, types, &c.name);
    let qualname = make_str(b, spec, types, &c.qualname);
    let table = make_bytes(b, spec, types, &compile_linetable(&c.lines));
    let names: Vec<u64> = c
        .varnames
        .iter()
        .map(|n| make_str(b, spec, types, n))
        .collect();
    let names = make_tuple(b, spec, types, &names);
    // CO_FAST_LOCAL for every name.
    let kinds = make_bytes(b, spec, types, &vec![0x20; c.varnames.len()]);
    b.u64(o, 1);
    b.u64(o + spec.off("pyobject.ob_type"), types.code);
    // `ob_size`: the bytecode's length in code units.
    b.u64(o + spec.off("tuple_object.ob_size"), u64::from(c.units()));
    b.u64(o + spec.off("code_object.filename"), filename);
    b.u64(o + spec.off("code_object.name"), name);
    b.u64(o + spec.off("code_object.qualname"), qualname);
    b.u64(o + spec.off("code_object.linetable"), table);
    b.u32(o + spec.off("code_object.firstlineno"), c.first_line as u32);
    b.u32(o + spec.off("code_object.argcount"), c.argcount as u32);
    b.u64(o + spec.off("code_object.localsplusnames"), names);
    b.u64(o + spec.off("code_object.localspluskinds"), kinds);
    o
}

/// Lay out the image described by `spec`.
///
/// # Panics
/// When `spec` refers to a code object that does not exist, or its table
/// lacks a field the builder places.
pub fn build(spec: &ImageSpec) -> Image {
    let mut b = Builder::new();

    let runtime = b.alloc(spec.off("runtime_state.size"));
    let interp = b.alloc(spec.off("interpreter_state.size"));
    let table = debug_offsets::encode_hex(spec.hex_version, spec.free_threaded, &spec.offsets);
    b.write(runtime, &table);
    b.u64(
        runtime + spec.off("runtime_state.interpreters_head"),
        interp,
    );

    // What the reader will make of the table: where a caller's call
    // instruction and return offset go.
    let calls = debug_offsets::DebugOffsets::parse(&table)
        .ok()
        .flatten()
        .and_then(|d| {
            debug_offsets::layout_from_debug_offsets(Version::from_hex(spec.hex_version), &d).ok()
        })
        .and_then(|l| match l.frame {
            crate::layout::FrameModel::Interpreter {
                calls: Some(calls),
                return_offset,
                ..
            } => Some((calls, return_offset)),
            crate::layout::FrameModel::Interpreter { calls: None, .. } => None,
            crate::layout::FrameModel::FrameObject { .. } => None,
        });

    let types = make_types(&mut b, spec);
    let codes: Vec<u64> = spec
        .codes
        .iter()
        .map(|c| make_code(&mut b, spec, &types, c))
        .collect();

    let frame_size = spec.off("interpreter_frame.size");
    // 3.14+ entry frames hold `PyStackRef_None`, a tagged reference.
    let none_tag = if Version::from_hex(spec.hex_version).minor >= 14 {
        TAG_REFCNT
    } else {
        0
    };
    let ts_size = spec.off("thread_state.size");
    let mut tstates = Vec::new();
    let mut all_frames = Vec::new();
    let mut base_frames = Vec::new();
    for t in &spec.threads {
        // `_PyThreadStateImpl` embeds the 3.15 base frame after the public
        // `PyThreadState`.
        let base_at = (ts_size + 7) & !7;
        let ts = b.alloc(base_at + frame_size);
        let base = spec.base_frames.then_some(ts + base_at);

        // One data stack chunk; outer frames at lower addresses.
        let n = t.frames.len() as u64;
        let slot = frame_size + 64;
        let chunk_bytes = 32 + slot * n.max(1);
        let chunk = b.alloc(chunk_bytes);
        // `_PyStackChunk`: no previous chunk, its size (header included).
        b.u64(chunk + crate::layout::STACK_CHUNK.chunk_size, chunk_bytes);
        let addrs: Vec<u64> = (0..n).map(|i| chunk + 32 + slot * (n - 1 - i)).collect();
        for (i, f) in t.frames.iter().enumerate() {
            let addr = addrs[i];
            let previous = addrs.get(i + 1).copied().or(base).unwrap_or(0);
            b.u64(addr + spec.off("interpreter_frame.previous"), previous);
            let (owner, executable, ip) = match *f {
                FrameSpec::Python {
                    code,
                    unit,
                    owner,
                    tag,
                } => {
                    let c = codes[code];
                    let ip = c + spec.off("code_object.co_code_adaptive") + 2 * unit as u64;
                    (owner, c | tag, ip)
                }
                FrameSpec::Shim { owner, code } => match code {
                    Some(i) => (
                        owner,
                        codes[i],
                        codes[i] + spec.off("code_object.co_code_adaptive"),
                    ),
                    None => (owner, types.none_obj | none_tag, 0),
                },
            };
            b.u64(addr + spec.off("interpreter_frame.executable"), executable);
            b.u64(addr + spec.off("interpreter_frame.instr_ptr"), ip);
            // A Python frame whose callee it pushed inline is stopped on a
            // `CALL`, with the return offset that call set.
            let callee_inline = i > 0 && matches!(t.frames[i - 1], FrameSpec::Python { .. });
            if let (true, FrameSpec::Python { code, unit, .. }, Some((calls, return_offset))) =
                (callee_inline, *f, calls)
            {
                if unit < spec.codes[code].units() {
                    b.write(ip, &[calls.call, 0]);
                    if let (Some(off), crate::layout::CallOp::Call { units, .. }) =
                        (return_offset, calls.op(calls.call))
                    {
                        b.write(addr + off, &u16::from(units).to_le_bytes());
                    }
                }
            }
            b.write(addr + spec.off("interpreter_frame.owner"), &[owner]);
        }
        if let Some(base) = base {
            b.u64(base + spec.off("interpreter_frame.previous"), 0);
            b.u64(
                base + spec.off("interpreter_frame.executable"),
                types.none_obj | TAG_REFCNT,
            );
            b.write(
                base + spec.off("interpreter_frame.owner"),
                &[OWNED_BY_INTERPRETER_OR_CSTACK],
            );
            b.u64(ts + spec.off("thread_state.base_frame"), base);
        }
        let top = addrs.first().copied().or(base).unwrap_or(0);
        b.u64(ts + spec.off("thread_state.interp"), interp);
        b.u64(ts + spec.off("thread_state.current_frame"), top);
        b.u64(ts + spec.off("thread_state.thread_id"), t.thread_id);
        b.u64(ts + spec.off("thread_state.native_thread_id"), t.native_id);
        b.u64(ts + spec.off("thread_state.datastack_chunk"), chunk);
        // Where the static layout of this minor also reads the chunk's top
        // and limit (3.13), they are the end of the chunk: every frame is in use.
        let version = Version::from_hex(spec.hex_version);
        if let Some(ds) = crate::layout::Layout::for_version(version)
            .and_then(|l| l.tstate_datastack)
            .filter(|ds| ds.chunk == spec.off("thread_state.datastack_chunk"))
        {
            for off in [ds.top, ds.limit].into_iter().flatten() {
                b.u64(ts + off, chunk + chunk_bytes);
            }
        }
        tstates.push(ts);
        all_frames.push(addrs);
        base_frames.push(base);
    }
    // Link the thread list: head first, `prev`/`next` both ways.
    for (i, ts) in tstates.iter().enumerate() {
        let next = tstates.get(i + 1).copied().unwrap_or(0);
        let prev = if i == 0 { 0 } else { tstates[i - 1] };
        b.u64(ts + spec.off("thread_state.next"), next);
        b.u64(ts + spec.off("thread_state.prev"), prev);
    }
    b.u64(
        interp + spec.off("interpreter_state.threads_head"),
        tstates.first().copied().unwrap_or(0),
    );
    if spec.has("interpreter_state.threads_main") {
        // The main thread is the oldest: the end of the list.
        b.u64(
            interp + spec.off("interpreter_state.threads_main"),
            tstates.last().copied().unwrap_or(0),
        );
    }
    if let Some(h) = spec.gil_holder {
        b.u32(
            interp + spec.off("interpreter_state.gil_runtime_state_locked"),
            1,
        );
        b.u64(
            interp + spec.off("interpreter_state.gil_runtime_state_holder"),
            tstates[h],
        );
        if spec.has("thread_state.holds_gil") {
            b.u32(tstates[h] + spec.off("thread_state.holds_gil"), 1);
        }
    }

    if spec.has("thread_state.gil_requested") {
        for &w in &spec.gil_waiters {
            b.u32(tstates[w] + spec.off("thread_state.gil_requested"), 1);
        }
    }

    Image {
        memory: b.finish(),
        runtime,
        interp,
        code_type: types.code,
        tstates,
        frames: all_frames,
        base_frames,
        codes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::LineTableFormat;
    use crate::linetable::LineTable;

    #[test]
    fn compiled_tables_decode_to_the_expected_lines() {
        let pairs = [(1, 0), (3, 1), (20, 5), (2, -4), (9, 200), (1, -150)];
        let table = compile_linetable(&pairs);
        let lt = LineTable::decode(LineTableFormat::Locations311, &table, 10);
        let units: u32 = pairs.iter().map(|(u, _)| u).sum();
        for unit in 0..units {
            assert_eq!(
                lt.line_at(2 * unit as u64),
                expected_line(10, &pairs, unit),
                "unit {unit}"
            );
        }
        assert_eq!(expected_line(10, &pairs, units), None);
    }

    #[test]
    fn every_table_is_complete_and_valid() {
        for minor in 13..=15u8 {
            let values = debug_values(minor).expect("table");
            let version = Version::new(3, minor, 0);
            for name in debug_offsets::field_names(version).expect("fields") {
                assert!(values.contains_key(name.as_str()), "3.{minor} lacks {name}");
            }
            assert_eq!(
                values.len(),
                debug_offsets::field_names(version).map_or(0, |f| f.len()),
                "3.{minor} has extra fields"
            );
            let bytes = debug_offsets::encode(version, false, &values);
            assert_eq!(Some(bytes.len()), debug_offsets::table_len(version));
            let parsed = debug_offsets::DebugOffsets::parse(&bytes)
                .expect("valid")
                .expect("cookie");
            assert_eq!(parsed.get("thread_state.next"), Some(8));
        }
    }
}
