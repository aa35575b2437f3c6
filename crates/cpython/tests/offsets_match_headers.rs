//! Proves the static layout tables against CPython itself, for every
//! interpreter installed on the machine.
//!
//! For each interpreter it:
//! 1. compiles and runs `tools/offsets/offsets.c` (via `print-offsets.sh`)
//!    against that interpreter's headers, and compares every `name=value`
//!    line with [`Layout::for_version`], field by field, in both directions
//!    (a field the headers have but the layout lacks is a mismatch too);
//! 2. runs the interpreter itself with a small ctypes script that reads its
//!    own memory at the layout's offsets (runtime → interpreter → thread →
//!    frames → code, GIL, strings, ints, dicts, instance dicts) and checks
//!    what it finds against what Python reports. This covers what headers
//!    cannot: `lasti_unit`, `instr_ptr_is_previous`, the dict and instance
//!    dict models, and the 3.8–3.10 dict keys struct, which is not installed.
//!
//! Interpreters are discovered from pyenv (`pyenv root`, else `$PYENV_ROOT`,
//! else `$HOME/.pyenv`; `versions/3.8.*` … `versions/3.13.*`, plain `X.Y.Z`
//! names only, so free-threaded `3.13.0t` builds are left out) and from
//! `/usr/bin/python3.8` … `/usr/bin/python3.13` (system headers under
//! `/usr/include/python3.X`).
//!
//! `PYROMETER_EXPECTED_PYTHONS` lists the interpreters that must be found;
//! a missing one fails the test rather than skipping it. Entries are
//! separated by commas or whitespace: `3.X` means "a pyenv 3.X.* build",
//! an absolute path means that interpreter. The default is
//! `3.8,3.9,3.10,3.11,3.12,3.13,/usr/bin/python3.11`; set it to an empty
//! string to check only whatever is installed.
//!
//! The matrix of checked interpreters is written to stderr directly, so it
//! shows even when the test passes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use pyrometer_cpython::layout::{
    DictKeysModel, FrameModel, FrameRoot, HeapModel, InstanceDictModel, Layout, LineTableFormat,
    LongModel, Version,
};

const DEFAULT_EXPECTED: &str = "3.8,3.9,3.10,3.11,3.12,3.13,/usr/bin/python3.11";

/// One interpreter to check.
struct Interpreter {
    label: String,
    python: PathBuf,
    /// pyenv minor (`3.X`) this interpreter satisfies, if it came from pyenv.
    pyenv_minor: Option<String>,
}

fn pyenv_root() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pyenv").arg("root").output() {
        if out.status.success() {
            let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !root.is_empty() {
                return Some(PathBuf::from(root));
            }
        }
    }
    if let Some(root) = std::env::var_os("PYENV_ROOT") {
        return Some(PathBuf::from(root));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".pyenv"))
}

/// `"3.11.7"` → `Some(11)`; anything else (`3.13.0t`, `3.12-dev`, `pypy3.10`) → None.
fn plain_minor(name: &str) -> Option<u8> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() != 3 || parts[0] != "3" {
        return None;
    }
    if !parts[1..]
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    parts[1].parse().ok()
}

fn discover() -> Vec<Interpreter> {
    let mut found = Vec::new();
    if let Some(root) = pyenv_root() {
        let mut names: Vec<String> = std::fs::read_dir(root.join("versions"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort_by_key(|n| {
            n.split('.')
                .map(|p| p.parse::<u32>().unwrap_or(0))
                .collect::<Vec<_>>()
        });
        for name in names {
            let Some(minor) = plain_minor(&name) else {
                continue;
            };
            if !(8..=13).contains(&minor) {
                continue;
            }
            let python = root.join("versions").join(&name).join("bin/python3");
            if python.exists() {
                found.push(Interpreter {
                    label: format!("pyenv {name}"),
                    python,
                    pyenv_minor: Some(format!("3.{minor}")),
                });
            }
        }
    }
    for minor in 8..=13 {
        let python = PathBuf::from(format!("/usr/bin/python3.{minor}"));
        if python.exists() {
            found.push(Interpreter {
                label: format!("system {}", python.display()),
                python,
                pyenv_minor: None,
            });
        }
    }
    found
}

fn expected_list() -> Vec<String> {
    let raw = std::env::var("PYROMETER_EXPECTED_PYTHONS")
        .unwrap_or_else(|_| DEFAULT_EXPECTED.to_string());
    raw.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn is_satisfied(expected: &str, found: &[Interpreter]) -> bool {
    if expected.starts_with('/') {
        found.iter().any(|i| i.python == Path::new(expected))
    } else {
        found
            .iter()
            .any(|i| i.pyenv_minor.as_deref() == Some(expected))
    }
}

/// A value the test compares: offsets and sizes are signed because some
/// facts printed by `offsets.c` (managed dict offsets) are negative.
type Fields = BTreeMap<String, i64>;

fn u(v: u64) -> i64 {
    i64::try_from(v).expect("offset fits in i64")
}

/// The layout as `name → value`, with the names `offsets.c` prints.
fn flatten(l: &Layout) -> Fields {
    let mut m = Fields::new();
    let mut put = |k: &str, v: u64| {
        m.insert(k.to_string(), u(v));
    };
    put("free_threaded", u64::from(l.free_threaded));
    put("runtime_interpreters_head", l.runtime_interpreters_head);
    put("interp_next", l.interp_next);
    put("interp_threads_head", l.interp_threads_head);
    put("interp_modules", l.interp_modules);
    put("gil_last_holder", l.gil_last_holder);
    put("gil_locked", l.gil_locked);
    put("tstate_next", l.tstate_next);
    put("tstate_interp", l.tstate_interp);
    put("tstate_thread_id", l.tstate_thread_id);
    match l.frame_root {
        FrameRoot::FrameObject { frame } => put("frame_root.frame", frame),
        FrameRoot::CFrame {
            cframe,
            current_frame,
        } => {
            put("frame_root.cframe", cframe);
            put("frame_root.current_frame", current_frame);
        }
        FrameRoot::Direct { current_frame } => put("frame_root.current_frame", current_frame),
    }
    if let Some(d) = l.tstate_datastack {
        put("tstate_datastack.chunk", d.chunk);
        if let Some(top) = d.top {
            put("tstate_datastack.top", top);
        }
        if let Some(limit) = d.limit {
            put("tstate_datastack.limit", limit);
        }
        put("tstate_datastack.chunk_previous", d.chunk_previous);
        put("tstate_datastack.chunk_size", d.chunk_size);
        put("tstate_datastack.chunk_data", d.chunk_data);
    }
    match l.frame {
        FrameModel::FrameObject {
            back,
            code,
            lasti,
            lineno,
            localsplus,
            ..
        } => {
            put("frame.back", back);
            put("frame.code", code);
            put("frame.lasti", lasti);
            put("frame.lineno", lineno);
            put("frame.localsplus", localsplus);
        }
        FrameModel::Interpreter {
            previous,
            executable,
            instr_ptr,
            localsplus,
            owner,
            return_offset,
            entry_flag,
            ..
        } => {
            put("frame.previous", previous);
            put("frame.executable", executable);
            put("frame.instr_ptr", instr_ptr);
            put("frame.localsplus", localsplus);
            put("frame.owner", owner);
            if let Some(off) = return_offset {
                put("frame.return_offset", off);
            }
            if let Some(off) = entry_flag {
                put("frame.entry_flag", off);
            }
        }
    }
    put("code_filename", l.code_filename);
    put("code_name", l.code_name);
    put("code_linetable", l.code_linetable);
    put("code_firstlineno", l.code_firstlineno);
    put("code_argcount", l.code_argcount);
    put("code_flags", l.code_flags);
    put("code_varnames", l.code_varnames);
    put("ob_type", l.ob_type);
    put("type_tp_name", l.type_tp_name);
    put("type_tp_flags", l.type_tp_flags);
    put("type_tp_basicsize", l.type_tp_basicsize);
    put("type_tp_dictoffset", l.type_tp_dictoffset);
    put("type_tp_members", l.type_tp_members);
    put("type_tp_base", l.type_tp_base);
    put("unicode_length", l.unicode_length);
    put("unicode_state", l.unicode_state);
    put("unicode_ascii_data", l.unicode_ascii_data);
    put("unicode_compact_data", l.unicode_compact_data);
    put("bytes_size", l.bytes_size);
    put("bytes_sval", l.bytes_sval);
    match l.long_model {
        LongModel::SignedSize { ob_size } => put("long_model.ob_size", ob_size),
        LongModel::Tagged { lv_tag } => put("long_model.lv_tag", lv_tag),
    }
    put("long_digit", l.long_digit);
    put("float_fval", l.float_fval);
    put("tuple_size", l.tuple_size);
    put("tuple_item", l.tuple_item);
    put("list_size", l.list_size);
    put("list_item", l.list_item);
    put("dict_used", l.dict_used);
    put("dict_keys", l.dict_keys);
    put("dict_values", l.dict_values);
    match l.dict_keys_model {
        DictKeysModel::Sized {
            dk_size,
            dk_nentries,
            dk_indices,
        } => {
            put("dict_keys_model.dk_size", dk_size);
            put("dict_keys_model.dk_nentries", dk_nentries);
            put("dict_keys_model.dk_indices", dk_indices);
        }
        DictKeysModel::Log2 {
            dk_log2_size,
            dk_log2_index_bytes,
            dk_kind,
            dk_nentries,
            dk_indices,
        } => {
            put("dict_keys_model.dk_log2_size", dk_log2_size);
            put("dict_keys_model.dk_log2_index_bytes", dk_log2_index_bytes);
            put("dict_keys_model.dk_kind", dk_kind);
            put("dict_keys_model.dk_nentries", dk_nentries);
            put("dict_keys_model.dk_indices", dk_indices);
        }
    }
    match l.heap {
        // 3.8-3.11: a symbol, and ARENA_SIZE is not in the headers (the
        // pymalloc live test checks it against sys._debugmallocstats()).
        HeapModel::StaticSymbol | HeapModel::Unknown => {}
        HeapModel::RuntimeInline { narenas } => {
            put("heap.narenas", narenas);
            put("arena_size", l.arena_size);
        }
        HeapModel::RuntimePointer { obmalloc, narenas } => {
            put("heap.obmalloc", obmalloc);
            put("heap.narenas", narenas);
            put("arena_size", l.arena_size);
        }
    }
    let optional = [
        ("runtime_gil", l.runtime_gil),
        ("interp_gil_ptr", l.interp_gil_ptr),
        ("interp_gil_inline", l.interp_gil_inline),
        ("tstate_native_thread_id", l.tstate_native_thread_id),
        ("code_qualname", l.code_qualname),
        ("code_localspluskinds", l.code_localspluskinds),
        ("code_nlocals", l.code_nlocals),
        ("code_cellvars", l.code_cellvars),
        ("code_freevars", l.code_freevars),
        ("code_code_adaptive", l.code_code_adaptive),
        ("heap_type_cached_keys", l.heap_type_cached_keys),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            put(k, v);
        }
    }
    m
}

/// The models and flags that are not offsets, for the live script.
fn models(l: &Layout) -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    match l.frame {
        FrameModel::FrameObject { lasti_unit, .. } => {
            v.push(("frame_model", "\"FrameObject\"".to_string()));
            v.push(("lasti_unit", lasti_unit.to_string()));
        }
        FrameModel::Interpreter {
            instr_ptr_is_previous,
            skip_owners,
            executable_tag_mask,
            ..
        } => {
            v.push(("frame_model", "\"Interpreter\"".to_string()));
            v.push(("instr_ptr_is_previous", instr_ptr_is_previous.to_string()));
            let owners: Vec<String> = skip_owners.iter().map(u8::to_string).collect();
            v.push(("skip_owners", format!("[{}]", owners.join(","))));
            v.push(("executable_tag_mask", executable_tag_mask.to_string()));
        }
    }
    let root = match l.frame_root {
        FrameRoot::FrameObject { .. } => "FrameObject",
        FrameRoot::CFrame { .. } => "CFrame",
        FrameRoot::Direct { .. } => "Direct",
    };
    v.push(("frame_root_kind", format!("\"{root}\"")));
    let line_table = match l.line_table {
        LineTableFormat::Lnotab => "Lnotab",
        LineTableFormat::Linetable310 => "Linetable310",
        LineTableFormat::Locations311 => "Locations311",
    };
    v.push(("line_table", format!("\"{line_table}\"")));
    let long = match l.long_model {
        LongModel::SignedSize { .. } => "SignedSize",
        LongModel::Tagged { .. } => "Tagged",
    };
    v.push(("long_model", format!("\"{long}\"")));
    let keys = match l.dict_keys_model {
        DictKeysModel::Sized { .. } => "Sized",
        DictKeysModel::Log2 { .. } => "Log2",
    };
    v.push(("dict_keys_model", format!("\"{keys}\"")));
    let inst = match l.instance_dict {
        InstanceDictModel::DictOffset => "DictOffset",
        InstanceDictModel::Managed311 => "Managed311",
        InstanceDictModel::DictOrValues312 => "DictOrValues312",
        InstanceDictModel::InlineValues313 => "InlineValues313",
    };
    v.push(("instance_dict", format!("\"{inst}\"")));
    v
}

fn to_json(fields: &Fields, models: &[(&'static str, String)], hex: i64) -> String {
    let mut parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    parts.extend(models.iter().map(|(k, v)| format!("\"{k}\": {v}")));
    parts.push(format!("\"hex\": {hex}"));
    format!("{{{}}}", parts.join(", "))
}

/// Runs `print-offsets.sh` and parses its `name=value` lines.
fn header_offsets(python: &Path) -> Result<Fields, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/offsets/print-offsets.sh");
    let out = Command::new("sh")
        .arg(&script)
        .arg(python)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "print-offsets.sh failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut m = Fields::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("bad line {line:?}"))?;
        let v: i64 = v
            .parse()
            .map_err(|e| format!("bad value in {line:?}: {e}"))?;
        m.insert(k.to_string(), v);
    }
    Ok(m)
}

/// Header values vs the layout, plus the model facts `offsets.c` prints
/// under `info.`. Returns the number of comparisons and the mismatches.
fn compare_with_headers(layout: &Layout, headers: &Fields) -> (usize, Vec<String>) {
    let want = flatten(layout);
    let mut errors = Vec::new();
    let mut compared = 0;
    for (k, v) in &want {
        compared += 1;
        match headers.get(k) {
            Some(h) if h == v => {}
            Some(h) => errors.push(format!("{k}: layout {v}, headers {h}")),
            None => errors.push(format!("{k}: layout {v}, absent from headers")),
        }
    }
    for (k, h) in headers {
        if !k.starts_with("info.") && !want.contains_key(k) {
            compared += 1;
            errors.push(format!("{k}: headers {h}, absent from layout"));
        }
    }
    let info = |k: &str| headers.get(&format!("info.{k}")).copied();
    // (what, value printed by offsets.c, value the layout's model implies)
    let mut facts: Vec<(&str, Option<i64>, i64)> = Vec::new();
    match layout.frame {
        FrameModel::FrameObject { .. } => {
            facts.push(("sizeof(f_lasti)", info("sizeof_f_lasti"), 4))
        }
        FrameModel::Interpreter {
            skip_owners,
            return_offset,
            ..
        } => {
            facts.push(("sizeof(owner)", info("sizeof_owner"), 1));
            if return_offset.is_some() {
                facts.push(("sizeof(return_offset)", info("sizeof_return_offset"), 2));
            }
            // The reader takes a code object's length from where a tuple keeps it.
            facts.push((
                "offsetof(PyVarObject, ob_size) (code objects)",
                info("code_ob_size"),
                layout.tuple_size as i64,
            ));
            compared += 1;
            match (skip_owners, info("frame_owned_by_cstack")) {
                ([], None) => {}
                ([o], Some(c)) if i64::from(*o) == c => {}
                (s, c) => errors.push(format!(
                    "skip_owners: layout {s:?}, headers FRAME_OWNED_BY_CSTACK {c:?}"
                )),
            }
        }
    }
    if let DictKeysModel::Log2 { .. } = layout.dict_keys_model {
        facts.push(("DICT_KEYS_GENERAL", info("dk_kind_general"), 0));
        facts.push(("DICT_KEYS_UNICODE", info("dk_kind_unicode"), 1));
        facts.push(("DICT_KEYS_SPLIT", info("dk_kind_split"), 2));
    }
    match layout.instance_dict {
        InstanceDictModel::DictOffset => {}
        InstanceDictModel::Managed311 => {
            facts.push(("managed dict at", info("managed_dict_offset"), -24));
            facts.push(("managed values at", info("managed_values_offset"), -32));
        }
        InstanceDictModel::DictOrValues312 => {
            facts.push(("dict-or-values at", info("managed_dict_offset"), -24));
            // The tagged pointer is `values - 1` (odd), so untagging adds 1;
            // masking the tag bit off would land 2 bytes early.
            facts.push((
                "dict-or-values stored as values - 1",
                info("dict_or_values_stored_minus_values"),
                -1,
            ));
            facts.push((
                "dict-or-values untag adds",
                info("dict_or_values_untag_add"),
                1,
            ));
        }
        InstanceDictModel::InlineValues313 => {
            facts.push(("managed dict at", info("managed_dict_offset"), -24));
            facts.push((
                "inline values at tp_basicsize",
                info("inline_values_offset_minus_basicsize"),
                0,
            ));
            // 4 header bytes, then the pointer array at pointer alignment.
            facts.push((
                "inline values array after header",
                info("inline_values_array_offset"),
                8,
            ));
        }
    }
    for (what, got, want) in facts {
        compared += 1;
        if got != Some(want) {
            errors.push(format!("{what}: layout implies {want}, headers {got:?}"));
        }
    }
    (compared, errors)
}

/// Reads the interpreter's own memory at the layout's offsets (ctypes) and
/// prints `ok NAME` or `FAIL NAME: got X, want Y` per check. Python 3.8
/// syntax. Inside `probe`, memory is read only with ctypes C calls so that
/// no Python frame is pushed between the thread state and the frame chain.
const LIVE_SCRIPT: &str = r#"
import ctypes, dis, json, sys, threading
L = json.loads(sys.argv[1])
results = []
def check(name, got, want):
    results.append((name, got == want, got, want))
R = ctypes.c_uint64.from_address
I64 = ctypes.c_int64.from_address
I32 = ctypes.c_int32.from_address
U32 = ctypes.c_uint32.from_address
U8 = ctypes.c_uint8.from_address
def ptr(a):
    return R(a).value
def pystr(a):
    n = I64(a + L['unicode_length']).value
    st = U32(a + L['unicode_state']).value
    kind, compact, ascii = (st >> 2) & 7, (st >> 5) & 1, (st >> 6) & 1
    if not compact or kind not in (1, 2, 4) or not 0 <= n < 1 << 20:
        return None
    data = a + (L['unicode_ascii_data'] if ascii else L['unicode_compact_data'])
    return ctypes.string_at(data, n * kind).decode({1: 'latin-1', 2: 'utf-16-le', 4: 'utf-32-le'}[kind])
def tuple_ids(a):
    n = I64(a + L['tuple_size']).value
    return [ptr(a + L['tuple_item'] + 8 * i) for i in range(n)]

check('sys.hexversion == headers PY_VERSION_HEX', sys.hexversion, L['hex'])

# Runtime, interpreter, thread, GIL.
rt = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, '_PyRuntime'))
interp = ptr(rt + L['runtime_interpreters_head'])
check('interp_next (single interpreter)', ptr(interp + L['interp_next']), 0)
check('interp_modules is sys.modules', ptr(interp + L['interp_modules']), id(sys.modules))
ts, me, n = ptr(interp + L['interp_threads_head']), 0, 0
while ts and n < 1000:
    check('tstate_interp', ptr(ts + L['tstate_interp']), interp)
    if ptr(ts + L['tstate_thread_id']) == threading.get_ident():
        me = ts
    ts, n = ptr(ts + L['tstate_next']), n + 1
check('tstate_thread_id finds this thread', me != 0, True)
if 'tstate_native_thread_id' in L:
    check('tstate_native_thread_id', ptr(me + L['tstate_native_thread_id']), threading.get_native_id())
if 'runtime_gil' in L:
    gil = rt + L['runtime_gil']
elif 'interp_gil_ptr' in L:
    gil = ptr(interp + L['interp_gil_ptr'])
else:
    gil = interp + L['interp_gil_inline']
check('gil_locked while running', I32(gil + L['gil_locked']).value, 1)
check('gil_last_holder is this thread', ptr(gil + L['gil_last_holder']), me)

# Frames.
interp_frames = L['frame_model'] == 'Interpreter'
def probe(marker):
    if L['frame_root_kind'] == 'FrameObject':
        cur = R(me + L['frame_root.frame']).value
    elif L['frame_root_kind'] == 'CFrame':
        cur = R(R(me + L['frame_root.cframe']).value + L['frame_root.current_frame']).value
    else:
        cur = R(me + L['frame_root.current_frame']).value
    chain = []
    x, n = cur, 0
    while x and n < 100:
        if interp_frames:
            exe = R(x + L['frame.executable']).value & ~L['executable_tag_mask']
            if U8(x + L['frame.owner']).value not in L['skip_owners']:
                chain.append((x, exe))
            x = R(x + L['frame.previous']).value
        else:
            chain.append((x, R(x + L['frame.code']).value))
            x = R(x + L['frame.back']).value
        n += 1
    # Read the frames now: they are gone (or reused) once probe/outer return.
    caller = sys._getframe(1)
    lp0 = R(cur + L['frame.localsplus']).value
    if interp_frames:
        ip = R(chain[1][0] + L['frame.instr_ptr']).value
        raw = ip - (chain[1][1] + L['code_code_adaptive'])
    else:
        raw = I32(chain[1][0] + L['frame.lasti']).value
    # `outer` called `probe` inline: 3.13+ sets its return_offset to the
    # CALL's length (3.12 leaves 0: prev_instr tells); 3.11 marks only a
    # frame entered from C (the module's) `is_entry`.
    flags = {}
    if 'frame.return_offset' in L:
        flags['return_offset'] = ctypes.c_uint16.from_address(chain[1][0] + L['frame.return_offset']).value
    if 'frame.entry_flag' in L:
        flags['entry'] = [U8(f + L['frame.entry_flag']).value for f, _ in chain]
    return cur, chain, lp0, raw, caller.f_lasti, flags
def outer():
    return probe(marker_obj), sys._getframe()
marker_obj = object()
(cur, chain, lp0, raw_lasti, caller_lasti, flags), outer_frame = outer()
want, g = [], outer_frame
while g is not None:
    want.append(id(g.f_code))
    g = g.f_back
check('frame chain code objects', [c for _, c in chain], [id(probe.__code__)] + want)
check('frame.localsplus[0] is the argument', lp0, id(marker_obj))
if interp_frames:
    check('frame.instr_ptr - co_code_adaptive == f_lasti', raw_lasti, caller_lasti)
    cc = outer_frame.f_code.co_code
    op = dis.opname[cc[raw_lasti]] if 0 <= raw_lasti < len(cc) else None
    # prev_instr (3.11/3.12) sits on the CALL's last cache unit; instr_ptr (3.13) on the CALL.
    check('instr_ptr_is_previous (opcode at instr_ptr)', op, 'CACHE' if L['instr_ptr_is_previous'] else 'CALL')
    if 'frame.return_offset' in L:
        check('frame.return_offset of a caller', flags['return_offset'], 4 if sys.version_info >= (3, 13) else 0)
    if 'frame.entry_flag' in L:
        check('frame.entry_flag (only the module frame is entered from C)', flags['entry'], [0] * (len(chain) - 1) + [1])
else:
    check('frame.lasti * lasti_unit == f_lasti', raw_lasti * L['lasti_unit'], caller_lasti)
    check('frame address is the frame object', chain[1][0], id(outer_frame))

# Code object.
co = probe.__code__
c = id(co)
check('code_name', pystr(ptr(c + L['code_name'])), co.co_name)
check('code_filename', pystr(ptr(c + L['code_filename'])), co.co_filename)
if 'code_qualname' in L:
    check('code_qualname', pystr(ptr(c + L['code_qualname'])), co.co_qualname)
lt = co.co_lnotab if L['line_table'] == 'Lnotab' else co.co_linetable
lt_addr = ptr(c + L['code_linetable'])
check('code_linetable object', lt_addr, id(lt))
check('bytes_size', I64(lt_addr + L['bytes_size']).value, len(lt))
check('bytes_sval', ctypes.string_at(lt_addr + L['bytes_sval'], len(lt)), lt)
check('code_firstlineno', I32(c + L['code_firstlineno']).value, co.co_firstlineno)
check('code_argcount', I32(c + L['code_argcount']).value, co.co_argcount)
check('code_flags', I32(c + L['code_flags']).value, co.co_flags)
check('code_varnames items', tuple_ids(ptr(c + L['code_varnames'])), [id(v) for v in co.co_varnames])
if 'code_localspluskinds' in L:
    check('code_localspluskinds length', I64(ptr(c + L['code_localspluskinds']) + L['bytes_size']).value, len(co.co_varnames))
if 'code_nlocals' in L:
    check('code_nlocals', I32(c + L['code_nlocals']).value, co.co_nlocals)
    check('code_cellvars', ptr(c + L['code_cellvars']), id(co.co_cellvars))
    check('code_freevars', ptr(c + L['code_freevars']), id(co.co_freevars))

# Objects and types.
class C:
    def __init__(self, a, b):
        self.a = a
        self.b = b
A, B = object(), object()
o = C(A, B)
check('ob_type', ptr(id(o) + L['ob_type']), id(C))
check('type_tp_name', ctypes.string_at(ptr(id(int) + L['type_tp_name'])), b'int')
check('type_tp_flags', ptr(id(C) + L['type_tp_flags']), C.__flags__)
check('type_tp_basicsize', I64(id(C) + L['type_tp_basicsize']).value, C.__basicsize__)
check('type_tp_dictoffset', I64(id(C) + L['type_tp_dictoffset']).value, C.__dictoffset__)
check('type_tp_base', ptr(id(C) + L['type_tp_base']), id(object))
class Slotted:
    __slots__ = ('x',)
check('type_tp_members set', ptr(id(Slotted) + L['type_tp_members']) != 0, True)
ck = ptr(id(C) + L['heap_type_cached_keys'])
check('heap_type_cached_keys set', ck != 0, True)
if ck:
    check('cached keys dk_nentries', I64(ck + L['dict_keys_model.dk_nentries']).value, 2)
    if L['dict_keys_model'] == 'Log2':
        check('cached keys dk_kind is split', U8(ck + L['dict_keys_model.dk_kind']).value, 2)
for s in ['ascii' * 3, 'h\xe9llo', 'h\u20acllo', 'h\U0001f600llo']:
    check('unicode %r' % s, pystr(id(s)), s)
b = bytes(range(5))
check('bytes object', ctypes.string_at(id(b) + L['bytes_sval'], I64(id(b) + L['bytes_size']).value), b)
v = -(2 ** 40 + 7)
if L['long_model'] == 'SignedSize':
    check('long ob_size', I64(id(v) + L['long_model.ob_size']).value, -2)
else:
    check('long lv_tag', ptr(id(v) + L['long_model.lv_tag']), (2 << 3) | 2)
check('long digits', [U32(id(v) + L['long_digit'] + 4 * i).value for i in range(2)], [7, 1024])
f = float(sys.hexversion) + 0.5
check('float_fval', ctypes.c_double.from_address(id(f) + L['float_fval']).value, f)
t = tuple([A, B, o])
check('tuple', tuple_ids(id(t)), [id(A), id(B), id(o)])
li = [A, B, o]
check('list_size', I64(id(li) + L['list_size']).value, 3)
check('list_item', [ptr(ptr(id(li) + L['list_item']) + 8 * i) for i in range(3)], [id(A), id(B), id(o)])

# Dicts.
d = {}
d['a'] = A
d['b'] = B
check('dict_used', I64(id(d) + L['dict_used']).value, 2)
check('dict_values (combined)', ptr(id(d) + L['dict_values']), 0)
k = ptr(id(d) + L['dict_keys'])
check('dk_nentries', I64(k + L['dict_keys_model.dk_nentries']).value, 2)
if L['dict_keys_model'] == 'Sized':
    check('dk_size', I64(k + L['dict_keys_model.dk_size']).value, 8)
    e = k + L['dict_keys_model.dk_indices'] + 8  # 8 one-byte indices, then {hash, key, value}
    check('first entry', [ptr(e + 8), ptr(e + 16)], [id('a'), id(A)])
else:
    check('dk_log2_size', U8(k + L['dict_keys_model.dk_log2_size']).value, 3)
    check('dk_log2_index_bytes', U8(k + L['dict_keys_model.dk_log2_index_bytes']).value, 3)
    check('dk_kind is unicode', U8(k + L['dict_keys_model.dk_kind']).value, 1)
    e = k + L['dict_keys_model.dk_indices'] + 8  # unicode entries are {key, value}
    check('first entry', [ptr(e), ptr(e + 8)], [id('a'), id(A)])

# Instance dicts.
m = L['instance_dict']
if m == 'DictOffset':
    check('tp_dictoffset > 0', C.__dictoffset__ > 0, True)
    check('dict at tp_dictoffset', ptr(id(o) + C.__dictoffset__), id(o.__dict__))
else:
    if m == 'Managed311':
        check('managed dict not yet made', ptr(id(o) - 24), 0)
        vals = ptr(id(o) - 32)
    elif m == 'DictOrValues312':
        raw = ptr(id(o) - 24)
        check('dict-or-values tagged as values', raw & 1, 1)
        vals = raw + 1  # stored as values - 1 (_PyDictOrValues_SetValues)
    else:
        check('Py_TPFLAGS_INLINE_VALUES', bool(C.__flags__ & (1 << 2)), True)
        hdr = id(o) + C.__basicsize__
        check('inline values header size/embedded/valid', [U8(hdr + i).value for i in (1, 2, 3)], [2, 1, 1])
        # The pointer array follows the 4 header bytes at pointer alignment.
        vals = hdr + 8
    check('instance values', [ptr(vals), ptr(vals + 8)], [id(A), id(B)])
    dd = o.__dict__
    check('managed dict pointer', ptr(id(o) - 24), id(dd))

bad = [r for r in results if not r[1]]
for name, ok, got, want in results:
    print(('ok   ' if ok else 'FAIL ') + name + ('' if ok else ': got %r, want %r' % (got, want)))
print('summary %d %d' % (len(results), len(bad)))
"#;

/// Runs [`LIVE_SCRIPT`] in the interpreter. Returns (checks run, failures).
fn live_check(python: &Path, layout: &Layout, hex: i64) -> (usize, Vec<String>) {
    let json = to_json(&flatten(layout), &models(layout), hex);
    let out = match Command::new(python)
        .args(["-I", "-c", LIVE_SCRIPT, &json])
        .output()
    {
        Ok(out) => out,
        Err(e) => return (0, vec![format!("cannot run {}: {e}", python.display())]),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failures: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL "))
        .map(|l| format!("live: {l}"))
        .collect();
    let summary = stdout.lines().find_map(|l| l.strip_prefix("summary "));
    match summary.and_then(|s| s.split_whitespace().next()?.parse().ok()) {
        Some(n) if out.status.success() => (n, failures),
        _ => {
            let mut f = failures;
            f.push(format!(
                "live script did not finish ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            (0, f)
        }
    }
}

#[test]
fn static_layouts_match_headers_and_live_interpreters() {
    let found = discover();
    let mut failures: Vec<String> = Vec::new();
    for expected in expected_list() {
        if !is_satisfied(&expected, &found) {
            failures.push(format!(
                "expected interpreter {expected} not found (see PYROMETER_EXPECTED_PYTHONS)"
            ));
        }
    }

    let mut rows = vec![[
        "interpreter".to_string(),
        "version".to_string(),
        "headers".to_string(),
        "live".to_string(),
        "result".to_string(),
    ]];
    for interp in &found {
        let mut errors = Vec::new();
        let (mut version_s, mut header_s, mut live_s) =
            ("?".to_string(), "-".to_string(), "-".to_string());
        match header_offsets(&interp.python) {
            Err(e) => errors.push(e),
            Ok(headers) => {
                let hex = headers.get("info.py_version_hex").copied().unwrap_or(0);
                let version = Version::from_hex(u64::try_from(hex).unwrap_or(0));
                version_s = version.to_string();
                if headers.get("info.py_debug") != Some(&0) {
                    errors.push("headers are from a Py_DEBUG build".to_string());
                }
                match Layout::for_version(version) {
                    None => errors.push(format!("no layout for {version}")),
                    Some(layout) => {
                        assert_eq!(layout.version, version);
                        let (n, e) = compare_with_headers(&layout, &headers);
                        header_s = format!("{}/{n}", n - e.len());
                        errors.extend(e);
                        let (n, e) = live_check(&interp.python, &layout, hex);
                        live_s = format!("{}/{n}", n.saturating_sub(e.len()));
                        errors.extend(e);
                    }
                }
            }
        }
        let result = if errors.is_empty() { "ok" } else { "FAIL" };
        rows.push([
            format!("{} ({})", interp.label, interp.python.display()),
            version_s,
            header_s,
            live_s,
            result.to_string(),
        ]);
        failures.extend(errors.into_iter().map(|e| format!("{}: {e}", interp.label)));
    }

    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut matrix = String::from("\nlayout check matrix (headers/live: passed/checked)\n");
    for r in &rows {
        for (c, cell) in r.iter().enumerate() {
            matrix.push_str(&format!("{cell:<w$}  ", w = widths[c]));
        }
        matrix.push('\n');
    }
    // Straight to stderr, past libtest's capture, so the matrix always shows.
    let _ = std::io::stderr().write_all(matrix.as_bytes());

    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
