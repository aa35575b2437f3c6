//! CPython's own `_Py_DebugOffsets` table (3.13+), found at the start of
//! `_PyRuntime`. It is read as untrusted input: the cookie, the version and
//! every offset are validated before a [`Layout`] is built from it.

use std::collections::HashMap;

use pyrometer_process::Memory;

use crate::error::CpythonError;
use crate::layout::{CallOps, FrameModel, FrameRoot, Layout, Version, CALLS_313, CALLS_314};

/// `_Py_Debug_Cookie`.
pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// The fields of one version's table, in declaration order: section name,
/// then its `uint64_t` members. Sections without a leading `size` say so by
/// not listing it.
type FieldList = &'static [(&'static str, &'static [&'static str])];

const V3_13: FieldList = &[
    (
        "runtime_state",
        &["size", "finalizing", "interpreters_head"],
    ),
    (
        "interpreter_state",
        &[
            "size",
            "id",
            "next",
            "threads_head",
            "gc",
            "imports_modules",
            "sysdict",
            "builtins",
            "ceval_gil",
            "gil_runtime_state",
            "gil_runtime_state_enabled",
            "gil_runtime_state_locked",
            "gil_runtime_state_holder",
        ],
    ),
    (
        "thread_state",
        &[
            "size",
            "prev",
            "next",
            "interp",
            "current_frame",
            "thread_id",
            "native_thread_id",
            "datastack_chunk",
            "status",
        ],
    ),
    (
        "interpreter_frame",
        &[
            "size",
            "previous",
            "executable",
            "instr_ptr",
            "localsplus",
            "owner",
        ],
    ),
    (
        "code_object",
        &[
            "size",
            "filename",
            "name",
            "qualname",
            "linetable",
            "firstlineno",
            "argcount",
            "localsplusnames",
            "localspluskinds",
            "co_code_adaptive",
        ],
    ),
    ("pyobject", &["size", "ob_type"]),
    ("type_object", &["size", "tp_name", "tp_repr", "tp_flags"]),
    ("tuple_object", &["size", "ob_item", "ob_size"]),
    ("list_object", &["size", "ob_item", "ob_size"]),
    ("dict_object", &["size", "ma_keys", "ma_values"]),
    ("float_object", &["size", "ob_fval"]),
    ("long_object", &["size", "lv_tag", "ob_digit"]),
    ("bytes_object", &["size", "ob_size", "ob_sval"]),
    (
        "unicode_object",
        &["size", "state", "length", "asciiobject_size"],
    ),
    ("gc", &["size", "collecting"]),
];

const V3_14: FieldList = &[
    (
        "runtime_state",
        &["size", "finalizing", "interpreters_head"],
    ),
    (
        "interpreter_state",
        &[
            "size",
            "id",
            "next",
            "threads_head",
            "threads_main",
            "gc",
            "imports_modules",
            "sysdict",
            "builtins",
            "ceval_gil",
            "gil_runtime_state",
            "gil_runtime_state_enabled",
            "gil_runtime_state_locked",
            "gil_runtime_state_holder",
            "code_object_generation",
            "tlbc_generation",
        ],
    ),
    (
        "thread_state",
        &[
            "size",
            "prev",
            "next",
            "interp",
            "current_frame",
            "thread_id",
            "native_thread_id",
            "datastack_chunk",
            "status",
        ],
    ),
    (
        "interpreter_frame",
        &[
            "size",
            "previous",
            "executable",
            "instr_ptr",
            "localsplus",
            "owner",
            "stackpointer",
            "tlbc_index",
        ],
    ),
    (
        "code_object",
        &[
            "size",
            "filename",
            "name",
            "qualname",
            "linetable",
            "firstlineno",
            "argcount",
            "localsplusnames",
            "localspluskinds",
            "co_code_adaptive",
            "co_tlbc",
        ],
    ),
    ("pyobject", &["size", "ob_type"]),
    ("type_object", &["size", "tp_name", "tp_repr", "tp_flags"]),
    ("tuple_object", &["size", "ob_item", "ob_size"]),
    ("list_object", &["size", "ob_item", "ob_size"]),
    ("set_object", &["size", "used", "table", "mask"]),
    ("dict_object", &["size", "ma_keys", "ma_values"]),
    ("float_object", &["size", "ob_fval"]),
    ("long_object", &["size", "lv_tag", "ob_digit"]),
    ("bytes_object", &["size", "ob_size", "ob_sval"]),
    (
        "unicode_object",
        &["size", "state", "length", "asciiobject_size"],
    ),
    ("gc", &["size", "collecting"]),
    (
        "gen_object",
        &["size", "gi_name", "gi_iframe", "gi_frame_state"],
    ),
    ("llist_node", &["next", "prev"]),
    (
        "debugger_support",
        &[
            "eval_breaker",
            "remote_debugger_support",
            "remote_debugging_enabled",
            "debugger_pending_call",
            "debugger_script_path",
            "debugger_script_path_size",
        ],
    ),
];

const V3_15: FieldList = &[
    (
        "runtime_state",
        &["size", "finalizing", "interpreters_head"],
    ),
    (
        "interpreter_state",
        &[
            "size",
            "id",
            "next",
            "threads_head",
            "threads_main",
            "gc",
            "imports_modules",
            "sysdict",
            "builtins",
            "ceval_gil",
            "gil_runtime_state",
            "gil_runtime_state_enabled",
            "gil_runtime_state_locked",
            "gil_runtime_state_holder",
            "code_object_generation",
            "tlbc_generation",
        ],
    ),
    (
        "thread_state",
        &[
            "size",
            "prev",
            "next",
            "interp",
            "current_frame",
            "base_frame",
            "last_profiled_frame",
            "last_profiled_frame_seq",
            "thread_id",
            "native_thread_id",
            "datastack_chunk",
            "status",
            "holds_gil",
            "gil_requested",
            "current_exception",
            "exc_state",
        ],
    ),
    ("err_stackitem", &["exc_value"]),
    (
        "interpreter_frame",
        &[
            "size",
            "previous",
            "executable",
            "instr_ptr",
            "localsplus",
            "owner",
            "stackpointer",
            "tlbc_index",
        ],
    ),
    (
        "code_object",
        &[
            "size",
            "filename",
            "name",
            "qualname",
            "linetable",
            "firstlineno",
            "argcount",
            "localsplusnames",
            "localspluskinds",
            "co_code_adaptive",
            "co_tlbc",
        ],
    ),
    ("pyobject", &["size", "ob_type"]),
    (
        "type_object",
        &[
            "size",
            "tp_name",
            "tp_repr",
            "tp_flags",
            "tp_basicsize",
            "tp_dictoffset",
        ],
    ),
    ("heap_type_object", &["size", "ht_cached_keys"]),
    ("tuple_object", &["size", "ob_item", "ob_size"]),
    ("list_object", &["size", "ob_item", "ob_size"]),
    ("set_object", &["size", "used", "table", "mask"]),
    ("dict_object", &["size", "ma_keys", "ma_values"]),
    ("float_object", &["size", "ob_fval"]),
    ("long_object", &["size", "lv_tag", "ob_digit"]),
    ("bytes_object", &["size", "ob_size", "ob_sval"]),
    (
        "unicode_object",
        &[
            "size",
            "state",
            "length",
            "asciiobject_size",
            "compactunicodeobject_size",
        ],
    ),
    (
        "gc",
        &[
            "size",
            "collecting",
            "frame",
            "generation_stats_size",
            "generation_stats",
        ],
    ),
    (
        "gen_object",
        &["size", "gi_name", "gi_iframe", "gi_frame_state"],
    ),
    ("llist_node", &["next", "prev"]),
    (
        "debugger_support",
        &[
            "eval_breaker",
            "remote_debugger_support",
            "remote_debugging_enabled",
            "debugger_pending_call",
            "debugger_script_path",
            "debugger_script_path_size",
        ],
    ),
];

/// Values that are sizes or lengths, not offsets into their section.
/// The largest struct size (and so offset) a table may announce.
const MAX_STRUCT_SIZE: u64 = 1 << 20;

const NOT_OFFSETS: &[&str] = &[
    "unicode_object.asciiobject_size",
    "unicode_object.compactunicodeobject_size",
    "debugger_support.debugger_script_path_size",
    "gc.generation_stats_size",
];

/// Fields holding a pointer or another 8-byte word on LP64 (x86-64,
/// aarch64): each must be 8-aligned and lie wholly inside its struct.
/// Free-threading-only fields (0 in GIL builds) are not listed.
const WORD_FIELDS: &[&str] = &[
    "runtime_state.interpreters_head",
    "interpreter_state.next",
    "interpreter_state.threads_head",
    "interpreter_state.threads_main",
    "interpreter_state.imports_modules",
    "interpreter_state.gil_runtime_state_holder",
    "thread_state.prev",
    "thread_state.next",
    "thread_state.interp",
    "thread_state.current_frame",
    "thread_state.base_frame",
    "thread_state.thread_id",
    "thread_state.native_thread_id",
    "thread_state.datastack_chunk",
    "interpreter_frame.previous",
    "interpreter_frame.executable",
    "interpreter_frame.instr_ptr",
    "code_object.filename",
    "code_object.name",
    "code_object.qualname",
    "code_object.linetable",
    "code_object.localsplusnames",
    "code_object.localspluskinds",
    "pyobject.ob_type",
    "type_object.tp_name",
    "type_object.tp_flags",
    "tuple_object.ob_size",
    "list_object.ob_item",
    "list_object.ob_size",
    "dict_object.ma_keys",
    "dict_object.ma_values",
    "bytes_object.ob_size",
    "unicode_object.length",
    "long_object.lv_tag",
];

/// The table layout of a minor version, whatever its release level.
fn fields_of_minor(major: u8, minor: u8) -> Option<FieldList> {
    match (major, minor) {
        (3, 13) => Some(V3_13),
        (3, 14) => Some(V3_14),
        (3, 15) => Some(V3_15),
        _ => None,
    }
}

/// Whether a `_Py_DebugOffsets` field list exists for `major.minor`.
pub fn knows_minor(major: u8, minor: u8) -> bool {
    fields_of_minor(major, minor).is_some()
}

/// `PY_VERSION_HEX` as CPython writes the version: `3.15.0a2`, `3.14.0rc1`,
/// `3.13.0`.
pub fn hex_version_string(hex: u64) -> String {
    let v = Version::from_hex(hex);
    let serial = hex & 0xf;
    let level = match v.level {
        0xA => "a",
        0xB => "b",
        0xC => "rc",
        _ => "",
    };
    if level.is_empty() {
        format!("{}.{}.{}", v.major, v.minor, v.micro)
    } else {
        format!("{}.{}.{}{level}{serial}", v.major, v.minor, v.micro)
    }
}

/// The field list of a version's table, and whether the exact (pre-)release
/// is one whose layout pyrometer knows. `hex` is the full `PY_VERSION_HEX`
/// (for the message).
fn field_list(hex: u64) -> Result<FieldList, CpythonError> {
    let version = Version::from_hex(hex);
    let Some(list) = fields_of_minor(version.major, version.minor) else {
        return Err(CpythonError::UnsupportedVersion {
            version: hex_version_string(hex),
            hint: if version.major == 3 && version.minor > 15 {
                ": a newer pyrometer may know its layout".into()
            } else {
                String::new()
            },
        });
    };
    // Alphas and betas still move fields inside the table (3.15.0b4 added
    // `last_profiled_frame_seq` to `thread_state`, shifting every later
    // field): only release candidates and finals are known.
    if version.level >= 0xC {
        Ok(list)
    } else {
        Err(CpythonError::UnsupportedVersion {
            version: hex_version_string(hex),
            hint: format!(
                ": it is a pre-release whose _Py_DebugOffsets layout pyrometer does not know \
                 (only {}.{} release candidates and final releases are supported); \
                 use a final release",
                version.major, version.minor
            ),
        })
    }
}

/// Size in bytes of the table of `version` (`None`: unknown minor).
pub fn table_len(version: Version) -> Option<usize> {
    fields_of_minor(version.major, version.minor)
        .map(|list| 24 + 8 * list.iter().map(|(_, m)| m.len()).sum::<usize>())
}

/// A parsed and validated debug offsets table.
#[derive(Debug, Clone)]
pub struct DebugOffsets {
    /// `PY_VERSION_HEX`.
    pub version: u64,
    /// `Py_GIL_DISABLED` build.
    pub free_threaded: bool,
    fields: HashMap<String, u64>,
}

impl DebugOffsets {
    /// A field as `section.member`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.fields.get(name).copied()
    }

    fn req(&self, name: &str) -> Result<u64, CpythonError> {
        self.get(name)
            .ok_or_else(|| CpythonError::BadDebugOffsets(format!("missing {name}")))
    }

    /// Parse `bytes` (the start of `_PyRuntime`): `None` when they do not
    /// start with the cookie, an error when the table is not one pyrometer
    /// knows or fails validation.
    pub fn parse(bytes: &[u8]) -> Result<Option<DebugOffsets>, CpythonError> {
        if bytes.len() < 24 || &bytes[..8] != COOKIE {
            return Ok(None);
        }
        let word = |i: usize| -> Option<u64> {
            let b = bytes.get(i * 8..i * 8 + 8)?;
            Some(u64::from_le_bytes(b.try_into().ok()?))
        };
        let version_hex = word(1).unwrap_or(0);
        let free_threaded = word(2).unwrap_or(0) == 1;
        let list = field_list(version_hex)?;
        let mut fields = HashMap::new();
        let mut i = 3;
        for (section, members) in list {
            for m in *members {
                let v = word(i).ok_or_else(|| {
                    CpythonError::BadDebugOffsets("table shorter than its version's".into())
                })?;
                fields.insert(format!("{section}.{m}"), v);
                i += 1;
            }
        }
        let parsed = DebugOffsets {
            version: version_hex,
            free_threaded,
            fields,
        };
        parsed.validate(list)?;
        Ok(Some(parsed))
    }

    /// Every offset must fall inside its section's reported size, and sizes
    /// must be sane; a table that fails is corrupt or not what we think.
    fn validate(&self, list: FieldList) -> Result<(), CpythonError> {
        for (section, members) in list {
            // A section without a size (e.g. `llist_node`) is still a
            // struct: its offsets get the largest plausible size as bound.
            let size = self
                .get(&format!("{section}.size"))
                .unwrap_or(MAX_STRUCT_SIZE);
            if size == 0 || size > MAX_STRUCT_SIZE {
                return Err(CpythonError::BadDebugOffsets(format!(
                    "{section}.size = {size} is implausible"
                )));
            }
            for m in members.iter().filter(|m| **m != "size") {
                let name = format!("{section}.{m}");
                if NOT_OFFSETS.contains(&name.as_str()) {
                    // Sizes, not offsets: still bounded.
                    let v = self.get(&name).unwrap_or(0);
                    if v > MAX_STRUCT_SIZE {
                        return Err(CpythonError::BadDebugOffsets(format!(
                            "{name} = {v} is implausible"
                        )));
                    }
                    continue;
                }
                let v = self.get(&name).unwrap_or(0);
                // Free-threading-only fields are 0 in GIL builds.
                if v >= size {
                    return Err(CpythonError::BadDebugOffsets(format!(
                        "{name} = {v} lies outside its struct of {size} bytes"
                    )));
                }
                if WORD_FIELDS.contains(&name.as_str()) && (!v.is_multiple_of(8) || v + 8 > size) {
                    return Err(CpythonError::BadDebugOffsets(format!(
                        "{name} = {v} is not an aligned 8-byte field of its struct of {size} bytes"
                    )));
                }
            }
        }
        for name in [
            "unicode_object.asciiobject_size",
            "unicode_object.compactunicodeobject_size",
        ] {
            // The compact size is optional in the field lists.
            let Some(v) = self.get(name) else {
                if name.ends_with("asciiobject_size") {
                    return Err(CpythonError::BadDebugOffsets(format!("missing {name}")));
                }
                continue;
            };
            if !(16..=256).contains(&v) {
                return Err(CpythonError::BadDebugOffsets(format!(
                    "{name} = {v} is implausible"
                )));
            }
        }
        Ok(())
    }
}

/// Read the table at `runtime`, if the interpreter has one. Exactly the
/// table's length is read, after its header names the version.
pub fn read<M: Memory>(mem: &M, runtime: u64) -> Result<Option<DebugOffsets>, CpythonError> {
    let mut head = [0u8; 24];
    if mem.read(runtime, &mut head).is_err() || &head[..8] != COOKIE {
        return Ok(None);
    }
    let mut hex = [0u8; 8];
    hex.copy_from_slice(&head[8..16]);
    let list = field_list(u64::from_le_bytes(hex))?;
    let len = 24 + 8 * list.iter().map(|(_, m)| m.len()).sum::<usize>();
    let bytes = mem.read_vec(runtime, len)?;
    DebugOffsets::parse(&bytes)
}

/// Build a layout from the interpreter's own table. Fields the table does
/// not carry (dict internals, frame owner values, instance dicts) come from
/// the nearest static layout: they are stable from 3.13 on.
pub fn layout_from_debug_offsets(
    version: Version,
    d: &DebugOffsets,
) -> Result<Layout, CpythonError> {
    let base = Layout::for_version(Version::new(3, 13, 0)).ok_or_else(|| {
        CpythonError::UnsupportedVersion {
            version: version.to_string(),
            hint: String::new(),
        }
    })?;
    // Owners of frames that are not Python code, and the tag bits of
    // `f_executable` (a `_PyStackRef` from 3.14, `Py_TAG_BITS` = 3):
    // 3.13 FRAME_OWNED_BY_CSTACK = 3; 3.14 FRAME_OWNED_BY_INTERPRETER = 3 and
    // FRAME_OWNED_BY_CSTACK = 4; 3.15 FRAME_OWNED_BY_INTERPRETER = 3 (the
    // C-stack owner is gone).
    // The call instructions are per minor too (see `layout::CallOps`);
    // 3.15's opcode numbers are not confirmed, so its callers go unchecked,
    // as are alphas' and betas' (opcodes are renumbered until the first
    // release candidate).
    let (skip_owners, tag_mask, calls): (&'static [u8], u64, Option<&'static CallOps>) =
        match version.minor {
            13 => (&[3], 0, Some(&CALLS_313)),
            14 => (&[3, 4], 3, Some(&CALLS_314)),
            _ => (&[3], 3, None),
        };
    let calls = calls.filter(|_| matches!(version.level, 0xC | 0xF));
    let owner = d.req("interpreter_frame.owner")?;
    let compact = d
        .get("unicode_object.compactunicodeobject_size")
        .unwrap_or(base.unicode_compact_data);
    // The table gives the GIL's fields relative to the interpreter state;
    // the layout wants them relative to `_gil`.
    let gil = d.req("interpreter_state.gil_runtime_state")?;
    let gil_field = |name: &str| -> Result<u64, CpythonError> {
        d.req(name)?.checked_sub(gil).ok_or_else(|| {
            CpythonError::BadDebugOffsets(format!(
                "{name} lies before interpreter_state.gil_runtime_state"
            ))
        })
    };
    let gil_locked = gil_field("interpreter_state.gil_runtime_state_locked")?;
    let gil_last_holder = gil_field("interpreter_state.gil_runtime_state_holder")?;
    let mut layout = Layout {
        version,
        free_threaded: d.free_threaded,
        runtime_interpreters_head: d.req("runtime_state.interpreters_head")?,
        interp_next: d.req("interpreter_state.next")?,
        interp_threads_head: d.req("interpreter_state.threads_head")?,
        interp_modules: d.req("interpreter_state.imports_modules")?,
        interp_gil_inline: Some(gil),
        gil_locked,
        gil_last_holder,
        tstate_next: d.req("thread_state.next")?,
        tstate_interp: d.req("thread_state.interp")?,
        tstate_thread_id: d.req("thread_state.thread_id")?,
        tstate_native_thread_id: Some(d.req("thread_state.native_thread_id")?),
        frame_root: FrameRoot::Direct {
            current_frame: d.req("thread_state.current_frame")?,
        },
        frame: FrameModel::Interpreter {
            previous: d.req("interpreter_frame.previous")?,
            executable: d.req("interpreter_frame.executable")?,
            instr_ptr: d.req("interpreter_frame.instr_ptr")?,
            instr_ptr_is_previous: false,
            localsplus: d.req("interpreter_frame.localsplus")?,
            owner,
            skip_owners,
            executable_tag_mask: tag_mask,
            calls,
            // The table does not carry it: a `uint16_t` just before `owner`
            // in every version that has it (3.12–3.15).
            return_offset: owner.checked_sub(2),
            entry_flag: None,
        },
        code_filename: d.req("code_object.filename")?,
        code_name: d.req("code_object.name")?,
        code_qualname: Some(d.req("code_object.qualname")?),
        code_linetable: d.req("code_object.linetable")?,
        code_firstlineno: d.req("code_object.firstlineno")?,
        code_argcount: d.req("code_object.argcount")?,
        code_varnames: d.req("code_object.localsplusnames")?,
        code_localspluskinds: Some(d.req("code_object.localspluskinds")?),
        code_code_adaptive: Some(d.req("code_object.co_code_adaptive")?),
        ob_type: d.req("pyobject.ob_type")?,
        type_tp_name: d.req("type_object.tp_name")?,
        type_tp_flags: d.req("type_object.tp_flags")?,
        unicode_length: d.req("unicode_object.length")?,
        unicode_state: d.req("unicode_object.state")?,
        unicode_ascii_data: d.req("unicode_object.asciiobject_size")?,
        unicode_compact_data: compact,
        bytes_size: d.req("bytes_object.ob_size")?,
        bytes_sval: d.req("bytes_object.ob_sval")?,
        long_model: crate::layout::LongModel::Tagged {
            lv_tag: d.req("long_object.lv_tag")?,
        },
        long_digit: d.req("long_object.ob_digit")?,
        float_fval: d.req("float_object.ob_fval")?,
        tuple_size: d.req("tuple_object.ob_size")?,
        tuple_item: d.req("tuple_object.ob_item")?,
        list_size: d.req("list_object.ob_size")?,
        list_item: d.req("list_object.ob_item")?,
        dict_keys: d.req("dict_object.ma_keys")?,
        dict_values: d.req("dict_object.ma_values")?,
        ..base
    };
    layout.interp_code_generation = d
        .get("interpreter_state.code_object_generation")
        .filter(|v| *v != 0);
    // `_Py_DebugOffsets` does not describe obmalloc: only 3.13's own table
    // is known to fit.
    if version.minor_pair() != base.version.minor_pair() {
        layout.heap = crate::layout::HeapModel::Unknown;
    }
    // The table names the data stack's newest chunk, not its top or limit
    // (the static layout of the same minor knows them); `_PyStackChunk`
    // itself is the same in every 3.11+ version.
    layout.tstate_datastack = match d.get("thread_state.datastack_chunk") {
        None => None,
        Some(chunk)
            if version.minor_pair() == base.version.minor_pair()
                && base.tstate_datastack.is_some_and(|b| b.chunk == chunk) =>
        {
            base.tstate_datastack
        }
        Some(chunk) => Some(crate::layout::DataStack {
            chunk,
            top: None,
            limit: None,
            ..crate::layout::STACK_CHUNK
        }),
    };
    layout.tstate_base_frame = d.get("thread_state.base_frame");
    layout.tstate_holds_gil = d.get("thread_state.holds_gil");
    layout.tstate_gil_requested = d.get("thread_state.gil_requested");
    if let Some(v) = d.get("type_object.tp_basicsize") {
        layout.type_tp_basicsize = v;
    }
    if let Some(v) = d.get("type_object.tp_dictoffset") {
        layout.type_tp_dictoffset = v;
    }
    if let Some(v) = d.get("heap_type_object.ht_cached_keys") {
        layout.heap_type_cached_keys = Some(v);
    }
    // The debug offsets say nothing of asyncio's C task or of coroutines
    // before 3.14; beyond the measured 3.13 the static guesses are dropped.
    if version.minor > 13 {
        layout.asyncio_task_coro = None;
        layout.coro_frame = crate::layout::CoroFrame::Unknown;
    }
    Ok(layout)
}

/// Build the bytes of a table, for synthetic images in tests: the field
/// list of `version`'s minor (whatever its release level, so that tables of
/// unknown pre-releases can be made too); fields not in `values` are 0.
pub fn encode(version: Version, free_threaded: bool, values: &HashMap<&str, u64>) -> Vec<u8> {
    let hex = (version.major as u64) << 24
        | (version.minor as u64) << 16
        | (version.micro as u64) << 8
        | (version.level as u64) << 4;
    encode_hex(hex, free_threaded, values)
}

/// [`encode`] with the exact `PY_VERSION_HEX` (release serial included).
pub fn encode_hex(hex: u64, free_threaded: bool, values: &HashMap<&str, u64>) -> Vec<u8> {
    let version = Version::from_hex(hex);
    let mut out = COOKIE.to_vec();
    out.extend_from_slice(&hex.to_le_bytes());
    out.extend_from_slice(&(free_threaded as u64).to_le_bytes());
    if let Some(list) = fields_of_minor(version.major, version.minor) {
        for (section, members) in list {
            for m in *members {
                let v = values
                    .get(format!("{section}.{m}").as_str())
                    .copied()
                    .unwrap_or(0);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

/// Every `section.member` name of `version`'s table, in table order.
pub fn field_names(version: Version) -> Option<Vec<String>> {
    let list = fields_of_minor(version.major, version.minor)?;
    Some(
        list.iter()
            .flat_map(|(section, members)| members.iter().map(move |m| format!("{section}.{m}")))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_size(list: FieldList) -> usize {
        24 + 8 * list.iter().map(|(_, m)| m.len()).sum::<usize>()
    }

    #[test]
    fn table_sizes_match_cpython() {
        assert_eq!(table_size(V3_13), 584);
        assert_eq!(table_size(V3_14), 760);
        assert_eq!(table_size(V3_15), 888);
    }

    /// A plausible table: every struct 4 KiB, fields at increasing offsets.
    pub(crate) fn plausible_values(list: FieldList) -> HashMap<String, u64> {
        let mut values = HashMap::new();
        for (section, members) in list {
            for (i, m) in members.iter().enumerate() {
                let v = if *m == "size" { 4096 } else { 8 * i as u64 };
                values.insert(format!("{section}.{m}"), v);
            }
        }
        values.insert("unicode_object.asciiobject_size".into(), 40);
        values
    }

    fn encode_owned(version: Version, values: &HashMap<String, u64>) -> Vec<u8> {
        let borrowed: HashMap<&str, u64> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        encode(version, false, &borrowed)
    }

    #[test]
    fn rejects_bad_cookie_and_offsets() {
        assert!(DebugOffsets::parse(b"notpython_______________")
            .unwrap()
            .is_none());
        let v = Version::new(3, 13, 0);
        let mut values = plausible_values(V3_13);
        let good = DebugOffsets::parse(&encode_owned(v, &values))
            .unwrap()
            .unwrap();
        assert_eq!(good.get("thread_state.next"), Some(16));
        values.insert("thread_state.next".into(), 5000);
        let err = DebugOffsets::parse(&encode_owned(v, &values))
            .unwrap_err()
            .to_string();
        assert!(err.contains("thread_state.next"), "{err}");
        values.insert("thread_state.next".into(), 16);
        values.insert("code_object.size".into(), 1 << 30);
        let err = DebugOffsets::parse(&encode_owned(v, &values))
            .unwrap_err()
            .to_string();
        assert!(err.contains("code_object.size"), "{err}");
    }

    #[test]
    fn refuses_unknown_prereleases() {
        let v = Version {
            major: 3,
            minor: 15,
            micro: 0,
            level: 0xA,
        };
        let bytes = encode(v, false, &HashMap::new());
        let mut b = bytes.clone();
        b[8..16].copy_from_slice(&(0x030f00a2u64).to_le_bytes());
        assert!(matches!(
            DebugOffsets::parse(&b),
            Err(CpythonError::UnsupportedVersion { .. })
        ));
    }
}
