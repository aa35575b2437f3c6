//! The object readers against live interpreters: every Python on the machine
//! (pyenv 3.8–3.13 and Debian's /usr/bin/python3.11) runs
//! `tests/data/objects_target.py`, which describes the objects it built as one
//! JSON line (addresses are `id()`s) and sleeps; we attach with
//! `process_vm_readv` and check every reader against that description.
//!
//! The interpreters come from `pyrometer_testsupport::require_all()`: an
//! expected interpreter that is missing fails the test, unless
//! `PYROMETER_EXPECTED_PYTHONS` (comma-separated interpreter paths) names the
//! interpreters to use instead.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use pyrometer_cpython::objects::{self, PyInt};
use pyrometer_cpython::{Layout, Version};
use pyrometer_process::Process;
use pyrometer_testsupport::serde_json::{self, Map, Value as Json};
use pyrometer_testsupport::{try_spawn_python, ChildGuard, Interp};

// ---------------------------------------------------------------------------
// The target

fn start(python: &Interp) -> Result<(ChildGuard, String), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/objects_target.py");
    try_spawn_python(python, &script, &[], Duration::from_secs(60))
}

// ---------------------------------------------------------------------------
// Reading the target's description (panics name what is wrong).

trait JsonExt {
    fn field(&self, key: &str) -> &Json;
    fn str(&self) -> &str;
    fn opt_str(&self, key: &str) -> Option<&str>;
    fn u64(&self) -> u64;
    fn bool(&self) -> bool;
    fn arr(&self) -> &[Json];
    fn obj(&self) -> &Map<String, Json>;
}

impl JsonExt for Json {
    fn field(&self, key: &str) -> &Json {
        self.get(key)
            .unwrap_or_else(|| panic!("JSON field {key} missing"))
    }
    fn str(&self) -> &str {
        match self {
            Json::String(s) => s,
            other => panic!("expected a JSON string, got {other:?}"),
        }
    }
    fn opt_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Json::as_str)
    }
    fn u64(&self) -> u64 {
        match self {
            Json::Number(n) => n.as_u64().unwrap_or_else(|| panic!("not a u64: {n}")),
            Json::String(n) => n.parse().unwrap_or_else(|_| panic!("not a u64: {n}")),
            other => panic!("expected a JSON number, got {other:?}"),
        }
    }
    fn bool(&self) -> bool {
        match self {
            Json::Bool(b) => *b,
            other => panic!("expected a JSON bool, got {other:?}"),
        }
    }
    fn arr(&self) -> &[Json] {
        match self {
            Json::Array(a) => a,
            other => panic!("expected a JSON array, got {other:?}"),
        }
    }
    fn obj(&self) -> &Map<String, Json> {
        match self {
            Json::Object(o) => o,
            other => panic!("expected a JSON object, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Checks

/// Failures of one interpreter, grouped by object kind.
#[derive(Default)]
struct Outcome {
    checked: BTreeMap<String, usize>,
    failures: BTreeMap<String, Vec<String>>,
}

impl Outcome {
    fn check(&mut self, kind: &str, ok: bool, what: impl FnOnce() -> String) {
        *self.checked.entry(kind.to_string()).or_default() += 1;
        if !ok {
            self.failures
                .entry(kind.to_string())
                .or_default()
                .push(what());
        }
    }
}

fn check_object(mem: &Process, layout: &Layout, label: &str, o: &Json, out: &mut Outcome) {
    let addr = o.field("addr").u64();
    let kind = o.field("kind").str();
    let group = match kind {
        "bool" | "none" => "bool/None",
        "tuple" | "list" => "tuple/list",
        k => k,
    };

    // Type name.
    let want_type = o.field("type").str();
    let got = objects::type_name(mem, layout, addr);
    out.check(group, got.as_deref() == Ok(want_type), || {
        format!("{label}: type_name {got:?}, want {want_type:?}")
    });

    // render_value.
    let rendered = objects::render_value(mem, layout, addr, 200);
    out.check("render", rendered.chars().count() <= 200, || {
        format!("{label}: render longer than 200: {rendered:?}")
    });
    if let Some(want) = o.opt_str("render") {
        out.check("render", rendered == want, || {
            format!("{label}: render {rendered:?}, want {want:?}")
        });
    }
    if let Some(prefix) = o.opt_str("render_prefix") {
        out.check("render", rendered.starts_with(prefix), || {
            format!("{label}: render {rendered:?} lacks prefix {prefix:?}")
        });
    }
    if let Some(suffix) = o.opt_str("render_suffix") {
        out.check("render", rendered.ends_with(suffix), || {
            format!("{label}: render {rendered:?} lacks suffix {suffix:?}")
        });
    }

    match kind {
        "str" => {
            let want = o.field("value").str();
            let len = o.field("len").u64();
            let got = objects::read_str(mem, layout, addr, 4096);
            out.check(group, got.as_deref() == Ok(want), || {
                format!("{label}: read_str {got:?}, want {want:?}")
            });
            let got = objects::str_len(mem, layout, addr);
            out.check(group, got == Ok(len), || {
                format!("{label}: str_len {got:?}, want {len}")
            });
            if len > 4 {
                let got = objects::read_str(mem, layout, addr, 4);
                out.check(
                    group,
                    matches!(got, Err(objects::ObjectError::TooLarge { .. })),
                    || format!("{label}: read_str beyond its bound gave {got:?}"),
                );
                let want4: String = want.chars().take(4).collect();
                let got = objects::read_str_prefix(mem, layout, addr, 4);
                out.check(group, got == Ok((want4.clone(), len)), || {
                    format!("{label}: read_str_prefix {got:?}, want {want4:?}")
                });
            }
            let got = objects::read_int(mem, layout, addr);
            out.check(
                group,
                matches!(got, Err(objects::ObjectError::WrongType { .. })),
                || format!("{label}: read_int on a str gave {got:?}"),
            );
        }
        "bytes" => {
            let hex = o.field("hex").str();
            let want: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let got = objects::read_bytes(mem, layout, addr, 4096);
            out.check(group, got.as_ref() == Ok(&want), || {
                format!("{label}: read_bytes {got:?}, want {want:?}")
            });
        }
        "int" => {
            let dec = o.field("dec").str();
            let got = objects::read_int_value(mem, layout, addr, 1024);
            out.check(
                group,
                got.as_ref().map(|v| v.to_string()).as_deref() == Ok(dec),
                || format!("{label}: read_int_value {got:?}, want {dec}"),
            );
            let small = dec.parse::<i64>().ok();
            let got = objects::read_int(mem, layout, addr);
            out.check(group, got.as_ref().ok().copied() == small, || {
                format!("{label}: read_int {got:?}, want {small:?}")
            });
            if let Ok(PyInt::Big(_)) = objects::read_int_value(mem, layout, addr, 1024) {
                out.check(group, small.is_none(), || {
                    format!("{label}: Big for a value that fits i64")
                });
            }
        }
        "float" => {
            let bits = o.field("bits").u64();
            let got = objects::read_float(mem, layout, addr).map(f64::to_bits);
            out.check(group, got == Ok(bits), || {
                format!("{label}: read_float bits {got:?}, want {bits}")
            });
        }
        "bool" => {
            let want = o.field("value").bool();
            let got = objects::read_bool(mem, layout, addr);
            out.check(group, got == Ok(want), || {
                format!("{label}: read_bool {got:?}, want {want}")
            });
            let got = objects::read_int(mem, layout, addr);
            out.check(group, got == Ok(i64::from(want)), || {
                format!("{label}: read_int of a bool {got:?}")
            });
            let got = objects::is_none(mem, layout, addr);
            out.check(group, got == Ok(false), || {
                format!("{label}: is_none {got:?}")
            });
        }
        "none" => {
            let got = objects::is_none(mem, layout, addr);
            out.check(group, got == Ok(true), || {
                format!("{label}: is_none {got:?}")
            });
        }
        "tuple" | "list" => {
            let want: Vec<u64> = o.field("items").arr().iter().map(JsonExt::u64).collect();
            let (got, len) = if kind == "tuple" {
                (
                    objects::tuple_items(mem, layout, addr, 1000),
                    objects::tuple_len(mem, layout, addr),
                )
            } else {
                (
                    objects::list_items(mem, layout, addr, 1000),
                    objects::list_len(mem, layout, addr),
                )
            };
            out.check(group, got.as_ref() == Ok(&want), || {
                format!("{label}: items {got:?}, want {want:?}")
            });
            out.check(group, len == Ok(want.len() as u64), || {
                format!("{label}: len {len:?}, want {}", want.len())
            });
            if want.len() > 3 {
                let got = if kind == "tuple" {
                    objects::tuple_items(mem, layout, addr, 3)
                } else {
                    objects::list_items(mem, layout, addr, 3)
                };
                out.check(group, got.as_deref() == Ok(&want[..3]), || {
                    format!("{label}: first 3 items {got:?}")
                });
            }
        }
        "dict" => {
            let want: Vec<(u64, u64)> = o
                .field("items")
                .arr()
                .iter()
                .map(|kv| (kv.arr()[0].u64(), kv.arr()[1].u64()))
                .collect();
            let got = objects::dict_items(mem, layout, addr, 1000);
            out.check(group, got.as_ref() == Ok(&want), || {
                format!("{label}: dict_items {got:?}, want {want:?}")
            });
            let len = objects::dict_len(mem, layout, addr);
            out.check(group, len == Ok(want.len() as u64), || {
                format!("{label}: dict_len {len:?}, want {}", want.len())
            });
            if want.len() > 2 {
                let got = objects::dict_items(mem, layout, addr, 2);
                out.check(group, got.as_deref() == Ok(&want[..2]), || {
                    format!("{label}: first 2 items {got:?}")
                });
            }
            for (key, value) in o.field("str_keys").obj() {
                let value = value.u64();
                let got = objects::dict_get_str(mem, layout, addr, key);
                out.check(group, got == Ok(Some(value)), || {
                    format!("{label}: dict_get_str({key:?}) {got:?}, want {value:#x}")
                });
            }
            let got = objects::dict_get_str(mem, layout, addr, "no such key");
            out.check(group, got == Ok(None), || {
                format!("{label}: dict_get_str(missing) {got:?}")
            });
        }
        "instance" => {
            let want: Vec<(String, u64)> = o
                .field("attrs")
                .arr()
                .iter()
                .map(|kv| (kv.arr()[0].str().to_string(), kv.arr()[1].u64()))
                .collect();
            for (name, value) in &want {
                let got = objects::get_attr(mem, layout, addr, name);
                out.check(group, got == Ok(Some(*value)), || {
                    format!("{label}: get_attr({name:?}) {got:?}, want {value:#x}")
                });
            }
            let got = objects::get_attr(mem, layout, addr, "no_such_attribute");
            out.check(group, got == Ok(None), || {
                format!("{label}: get_attr(missing) {got:?}")
            });
            let attrs = objects::instance_attrs(mem, layout, addr, 100).map(|v| {
                v.iter()
                    .map(|(k, v)| {
                        (
                            objects::read_str(mem, layout, *k, 100).unwrap_or_default(),
                            *v,
                        )
                    })
                    .collect::<Vec<_>>()
            });
            if o.field("ordered").bool() {
                out.check(group, attrs.as_ref() == Ok(&want), || {
                    format!("{label}: instance_attrs {attrs:?}, want {want:?}")
                });
            } else {
                let ok = attrs
                    .as_ref()
                    .is_ok_and(|a| want.iter().all(|w| a.contains(w)));
                out.check(group, ok, || {
                    format!("{label}: instance_attrs {attrs:?} lacks some of {want:?}")
                });
            }
        }
        other => panic!("unknown kind {other} in the target's description"),
    }
}

/// Check that the target's objects really are stored the way each model
/// expects, so that the reader checks above cover every storage path:
/// split tables (≤3.10), values without a dict (3.11: values pointer; 3.12:
/// tagged pointer; 3.13: inline values), materialized dicts, the three 3.11+
/// keys kinds and wide indices.
fn check_paths(mem: &Process, layout: &Layout, doc: &Json, out: &mut Outcome) {
    use pyrometer_cpython::layout::{DictKeysModel, InstanceDictModel};
    use pyrometer_process::Memory;
    let objs = doc.field("objects");
    let addr = |label: &str| objs.field(label).field("addr").u64();
    let rd = |a: u64| mem.read_u64(a).unwrap_or(u64::MAX);
    let keys_kind = |dict: u64| -> Option<u8> {
        let DictKeysModel::Log2 { dk_kind, .. } = layout.dict_keys_model else {
            return None;
        };
        mem.read_u8(rd(dict + layout.dict_keys) + dk_kind).ok()
    };
    let keys_size = |dict: u64| -> u64 {
        let keys = rd(dict + layout.dict_keys);
        match layout.dict_keys_model {
            DictKeysModel::Sized { dk_size, .. } => rd(keys + dk_size),
            DictKeysModel::Log2 { dk_log2_size, .. } => {
                1 << mem.read_u8(keys + dk_log2_size).unwrap_or(0)
            }
        }
    };
    let mut expect = |what: &str, ok: bool| out.check("paths", ok, || what.to_string());
    let plain = addr("instance_plain");
    let materialized = addr("instance_materialized");
    let tp = rd(plain + layout.ob_type);
    let flags = rd(tp + layout.type_tp_flags);
    match layout.instance_dict {
        InstanceDictModel::DictOffset => {
            let off = rd(tp + layout.type_tp_dictoffset);
            let dict = rd(plain + off);
            expect(
                "≤3.10 instance dict is a split table",
                rd(dict + layout.dict_values) != 0,
            );
        }
        InstanceDictModel::Managed311 => {
            expect(
                "3.11 plain instance has values, no dict",
                rd(plain - 24) == 0 && rd(plain - 32) != 0,
            );
            expect(
                "3.11 materialized instance has a split dict",
                keys_kind(rd(materialized - 24)) == Some(2),
            );
        }
        InstanceDictModel::DictOrValues312 => {
            expect(
                "3.12 plain instance has tagged values",
                rd(plain - 24) & 1 == 1,
            );
            let d = rd(materialized - 24);
            expect(
                "3.12 materialized instance has a split dict",
                d & 1 == 0 && keys_kind(d) == Some(2),
            );
        }
        InstanceDictModel::InlineValues313 => {
            expect(
                "3.13 plain instance has inline values, no dict",
                rd(plain - 24) == 0 && flags & (1 << 2) != 0,
            );
            expect(
                "3.13 materialized instance has a split dict",
                keys_kind(rd(materialized - 24)) == Some(2),
            );
        }
    }
    if matches!(layout.dict_keys_model, DictKeysModel::Log2 { .. }) {
        expect(
            "str-keyed dict is unicode-kind",
            keys_kind(addr("dict_str")) == Some(1),
        );
        expect(
            "int-keyed dict is general-kind",
            keys_kind(addr("dict_int")) == Some(0),
        );
    }
    expect(
        "big dict has 2-byte indices",
        keys_size(addr("dict_big")) > 0xff,
    );
}

const GROUPS: [&str; 11] = [
    "str",
    "bytes",
    "int",
    "float",
    "bool/None",
    "tuple/list",
    "dict",
    "instance",
    "render",
    "paths",
    "setup",
];

fn run_one(python: &Interp) -> (String, Outcome) {
    let mut out = Outcome::default();
    let (guard, line) = match start(python) {
        Ok(x) => x,
        Err(e) => {
            out.check("setup", false, || e);
            return ("?".into(), out);
        }
    };
    let doc: Json = match serde_json::from_str(line.trim()) {
        Ok(d) => d,
        Err(e) => {
            out.check("setup", false, || format!("bad JSON from the target: {e}"));
            return ("?".into(), out);
        }
    };
    let v: Vec<u64> = doc
        .field("version")
        .arr()
        .iter()
        .map(JsonExt::u64)
        .collect();
    let version = Version::new(v[0] as u8, v[1] as u8, v[2] as u8);
    let Some(layout) = Layout::for_version(version) else {
        out.check("setup", false, || format!("no Layout for {version}"));
        return (version.to_string(), out);
    };
    let pid = guard.pid();
    let process = match Process::attach(pid) {
        Ok(p) => p,
        Err(e) => {
            out.check("setup", false, || format!("attach {pid}: {e}"));
            return (version.to_string(), out);
        }
    };
    out.check("setup", true, String::new);
    for (label, o) in doc.field("objects").obj() {
        check_object(&process, &layout, label, o, &mut out);
    }
    check_paths(&process, &layout, &doc, &mut out);
    drop(guard);
    (version.to_string(), out)
}

#[test]
fn object_readers_on_every_interpreter() {
    let pythons = pyrometer_testsupport::require_all();
    let mut rows = Vec::new();
    for python in &pythons {
        let (version, outcome) = run_one(python);
        rows.push((python.path.display().to_string(), version, outcome));
    }

    // The matrix.
    let mut table = format!("{:<46} {:<8}", "interpreter", "version");
    for g in GROUPS {
        table.push_str(&format!(" {g:>10}"));
    }
    table.push('\n');
    let mut failures = Vec::new();
    for (path, version, outcome) in &rows {
        table.push_str(&format!("{path:<46} {version:<8}"));
        for g in GROUPS {
            let n = outcome.checked.get(g).copied().unwrap_or(0);
            let bad = outcome.failures.get(g).map_or(0, Vec::len);
            let cell = if n == 0 {
                "-".to_string()
            } else if bad == 0 {
                format!("ok {n}")
            } else {
                format!("FAIL {bad}/{n}")
            };
            table.push_str(&format!(" {cell:>10}"));
        }
        table.push('\n');
        for (g, list) in &outcome.failures {
            for f in list {
                failures.push(format!("{path} ({version}) [{g}] {f}"));
            }
        }
    }
    println!("{table}");
    eprintln!("{table}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn json_reader_handles_what_python_writes() {
    let j: Json = serde_json::from_str(
        r#"{"a": [1, -2, 3.5e-7, true, false, null], "s": "\u00e9\ud83d\ude00\n\"", "u": "é"}"#,
    )
    .unwrap();
    assert_eq!(j.field("a").arr().len(), 6);
    assert_eq!(j.field("s").str(), "é😀\n\"");
    assert_eq!(j.field("u").str(), "é");
    assert_eq!(j.field("a").arr()[0].u64(), 1);
}
