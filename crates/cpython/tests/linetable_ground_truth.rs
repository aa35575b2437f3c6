//! Ground truth for `pyrometer_cpython::linetable` against real CPython.
//!
//! Runs `tests/data/dump_lines.py` under every CPython on the machine; the
//! script compiles thousands of code objects (stdlib modules and synthetic
//! edge cases, every nested code object) and reports, through
//! `PyCode_Addr2Line` via ctypes, the line CPython gives for every
//! instruction offset. This test checks that `LineTable::line_at` (and the
//! one-shot `line_of`) agree on every offset of every code object.
//!
//! Interpreters:
//!
//! * Expected by default: one pyenv install of each of 3.8, 3.9, 3.10, 3.11,
//!   3.12 and 3.13 (pyenv root from `$PYENV_ROOT`, else `pyenv root`, else
//!   `$HOME/.pyenv`) and Debian's `/usr/bin/python3.11`. A missing one is a
//!   **failure**, not a skip. Every other pyenv `3.x` install with x >= 8 is
//!   tested too.
//! * `PYROMETER_EXPECTED_PYTHONS=/path/a,/path/b` overrides this: exactly
//!   those interpreters are tested, and each must exist. (Set it to a list
//!   of what the machine has, e.g. in CI images without pyenv.)
//! * `PYROMETER_DUMP_LINES_MODULES=N` limits the script to its first N
//!   stdlib modules (default 40) to trade coverage for time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pyrometer_cpython::layout::LineTableFormat;
use pyrometer_cpython::linetable::{line_of, LineTable};

const ENV_EXPECTED: &str = "PYROMETER_EXPECTED_PYTHONS";
const ENV_MODULES: &str = "PYROMETER_DUMP_LINES_MODULES";
const DEFAULT_MODULES: usize = 40;

#[test]
fn line_tables_match_cpython() {
    let pythons = expected_pythons();
    assert!(!pythons.is_empty(), "no interpreters to test");
    let modules = std::env::var(ENV_MODULES)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(DEFAULT_MODULES);

    // Run the interpreters on a small pool of threads.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    let queue = std::sync::Mutex::new(pythons.clone());
    let results = std::sync::Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(py) = queue.lock().unwrap().pop() else {
                    break;
                };
                let r = check_interpreter(&py, modules);
                results.lock().unwrap().insert(py, r);
            });
        }
    });

    let mut failures = Vec::new();
    let results = results.into_inner().unwrap();
    for py in &pythons {
        match &results[py] {
            Ok(rep) => {
                println!(
                    "{:<40} {:>8} {:<13} {:<17} {:>6} code objects {:>9} offsets checked  {:>5.1}s",
                    py.display(),
                    rep.version,
                    format!("{:?}", rep.format),
                    rep.source,
                    rep.code_objects,
                    rep.offsets,
                    rep.secs
                );
                if !rep.mismatches.is_empty() {
                    failures.push(format!(
                        "{}: {} mismatches, first ones:\n  {}",
                        py.display(),
                        rep.mismatch_count,
                        rep.mismatches.join("\n  ")
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", py.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The interpreters to test: the override list, or pyenv's plus Debian's.
fn expected_pythons() -> Vec<PathBuf> {
    if let Ok(list) = std::env::var(ENV_EXPECTED) {
        let paths: Vec<PathBuf> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        for p in &paths {
            assert!(
                p.exists(),
                "{ENV_EXPECTED} names {}, which does not exist",
                p.display()
            );
        }
        return paths;
    }

    let mut out = Vec::new();
    let mut missing = Vec::new();
    let root = pyenv_root();
    // minor -> pyenv interpreters of that minor version
    let mut by_minor: BTreeMap<u32, Vec<PathBuf>> = BTreeMap::new();
    if let Some(root) = &root {
        if let Ok(dir) = std::fs::read_dir(root.join("versions")) {
            let mut names: Vec<String> = dir
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect();
            names.sort();
            for name in names {
                let mut parts = name.split('.');
                let (Some("3"), Some(minor)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let Ok(minor) = minor.parse::<u32>() else {
                    continue;
                };
                let py = root.join("versions").join(&name).join("bin/python3");
                if minor >= 8 && py.exists() {
                    by_minor.entry(minor).or_default().push(py);
                }
            }
        }
    }
    for minor in 8..=13 {
        if !by_minor.contains_key(&minor) {
            missing.push(format!(
                "pyenv 3.{minor} (under {})",
                root.as_deref()
                    .map(|r| r.display().to_string())
                    .unwrap_or_else(|| "<no pyenv root>".into())
            ));
        }
    }
    out.extend(by_minor.into_values().flatten());
    let debian = PathBuf::from("/usr/bin/python3.11");
    if debian.exists() {
        out.push(debian);
    } else {
        missing.push("/usr/bin/python3.11".into());
    }
    assert!(
        missing.is_empty(),
        "expected interpreters missing: {}; set {ENV_EXPECTED}=path,path,... to override",
        missing.join(", ")
    );
    out
}

fn pyenv_root() -> Option<PathBuf> {
    if let Some(r) = std::env::var_os("PYENV_ROOT").filter(|r| !r.is_empty()) {
        return Some(PathBuf::from(r));
    }
    if let Ok(out) = Command::new("pyenv").arg("root").output() {
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !s.is_empty() {
            return Some(PathBuf::from(s));
        }
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv"))
}

struct Report {
    version: String,
    format: LineTableFormat,
    source: String,
    code_objects: usize,
    offsets: u64,
    secs: f64,
    mismatch_count: usize,
    mismatches: Vec<String>,
}

fn format_for(version: &str) -> Result<LineTableFormat, String> {
    let mut it = version.split('.').map(|p| p.parse::<u32>());
    match (it.next(), it.next()) {
        (Some(Ok(3)), Some(Ok(8 | 9))) => Ok(LineTableFormat::Lnotab),
        (Some(Ok(3)), Some(Ok(10))) => Ok(LineTableFormat::Linetable310),
        (Some(Ok(3)), Some(Ok(m))) if m >= 11 => Ok(LineTableFormat::Locations311),
        _ => Err(format!("unsupported version {version}")),
    }
}

fn check_interpreter(py: &Path, modules: usize) -> Result<Report, String> {
    let t0 = Instant::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dump_lines.py");
    let out = Command::new(py)
        .arg("-I")
        .arg(&script)
        .arg(modules.to_string())
        .output()
        .map_err(|e| format!("cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "dump_lines.py failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8(out.stdout).map_err(|e| format!("non-UTF-8 output: {e}"))?;
    let mut lines = text.lines();
    let header = json::parse(lines.next().ok_or("empty output")?)?;
    let version = header
        .get("version")
        .and_then(|v| v.as_str())
        .ok_or("no version")?;
    let format = format_for(version)?;
    let script_format = header.get("format").and_then(|v| v.as_str()).unwrap_or("");
    if script_format != format!("{format:?}") {
        return Err(format!(
            "script says format {script_format}, expected {format:?}"
        ));
    }
    let source = header
        .get("source")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();

    let mut rep = Report {
        version: version.to_string(),
        format,
        source,
        code_objects: 0,
        offsets: 0,
        secs: 0.0,
        mismatch_count: 0,
        mismatches: Vec::new(),
    };
    for line in lines {
        let v = json::parse(line)?;
        let field = |k: &str| v.get(k).ok_or_else(|| format!("missing {k} in {line}"));
        let name = field("name")?.as_str().ok_or("name")?;
        let first_line = i32::try_from(field("first_line")?.as_i64().ok_or("first_line")?)
            .map_err(|e| e.to_string())?;
        let table = unhex(field("table")?.as_str().ok_or("table")?)?;
        let code_len = field("code_len")?.as_i64().ok_or("code_len")? as u64;
        let rle = field("lines")?.as_array().ok_or("lines")?;
        let beyond = field("beyond")?.as_array().ok_or("beyond")?;

        let lt = LineTable::decode(format, &table, first_line);
        let expect = |raw: i64| -> Option<i32> {
            // PyCode_Addr2Line returns -1 for "no line" since 3.10; before,
            // it returns whatever the lnotab walk computed.
            if raw == -1 && format != LineTableFormat::Lnotab {
                None
            } else {
                Some(raw as i32)
            }
        };
        let mut mismatch = |off: u64, want: Option<i32>, got: Option<i32>, how: &str| {
            rep.mismatch_count += 1;
            if rep.mismatches.len() < 20 {
                rep.mismatches.push(format!(
                    "{name} table={} offset {off}: CPython {want:?}, {how} {got:?}",
                    hex(&table)
                ));
            }
        };

        let mut off = 0u64;
        let mut checked = Vec::new();
        for pair in rle.chunks(2) {
            let [l, n] = pair else {
                return Err(format!("odd RLE in {name}"));
            };
            let want = expect(l.as_i64().ok_or("line")?);
            for _ in 0..n.as_i64().ok_or("count")? {
                let got = lt.line_at(off);
                if got != want {
                    mismatch(off, want, got, "line_at");
                }
                checked.push((off, want));
                off += 2;
            }
        }
        if off != code_len.next_multiple_of(2) {
            return Err(format!(
                "{name}: RLE covers {off} bytes, code_len {code_len}"
            ));
        }
        for b in beyond {
            let pair = b.as_array().ok_or("beyond pair")?;
            let (Some(o), Some(l)) = (
                pair.first().and_then(|x| x.as_i64()),
                pair.get(1).and_then(|x| x.as_i64()),
            ) else {
                return Err(format!("bad beyond in {name}"));
            };
            let want = expect(l);
            let got = lt.line_at(o as u64);
            if got != want {
                mismatch(o as u64, want, got, "line_at (past the end)");
            }
            checked.push((o as u64, want));
        }
        // The one-shot decoder is O(table) per call: sample it.
        let step = (checked.len() / 16).max(1);
        for &(o, want) in checked.iter().step_by(step).chain(checked.last()) {
            let got = line_of(format, &table, first_line, o);
            if got != want {
                mismatch(o, want, got, "line_of");
            }
        }
        rep.code_objects += 1;
        rep.offsets += checked.len() as u64;
    }
    if rep.code_objects < 1000 {
        return Err(format!("only {} code objects dumped", rep.code_objects));
    }
    rep.secs = t0.elapsed().as_secs_f64();
    Ok(rep)
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digits = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            if digits.len() != 2 {
                return Err(format!("odd hex length {}", s.len()));
            }
            u8::from_str_radix(digits, 16).map_err(|e| e.to_string())
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    if b.len() > 64 {
        return format!("<{} bytes>", b.len());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A minimal JSON reader for the script's output (no dependencies).
mod json {
    #[derive(Debug)]
    pub enum Value {
        Null,
        Bool(#[allow(dead_code)] bool),
        Int(i64),
        Float(#[allow(dead_code)] f64),
        Str(String),
        Arr(Vec<Value>),
        Obj(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Value::Str(s) => Some(s),
                _ => None,
            }
        }
        pub fn as_i64(&self) -> Option<i64> {
            match self {
                Value::Int(i) => Some(*i),
                _ => None,
            }
        }
        pub fn as_array(&self) -> Option<&[Value]> {
            match self {
                Value::Arr(a) => Some(a),
                _ => None,
            }
        }
    }

    pub fn parse(s: &str) -> Result<Value, String> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing data at {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.b.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) -> Result<(), String> {
            self.ws();
            if self.b.get(self.i) == Some(&c) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected '{}' at {}", c as char, self.i))
            }
        }
        fn lit(&mut self, word: &str, v: Value) -> Result<Value, String> {
            if self.b[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                Ok(v)
            } else {
                Err(format!("bad literal at {}", self.i))
            }
        }
        fn value(&mut self) -> Result<Value, String> {
            self.ws();
            match self.b.get(self.i).copied() {
                Some(b'{') => {
                    self.i += 1;
                    let mut kv = Vec::new();
                    self.ws();
                    if self.b.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Value::Obj(kv));
                    }
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.eat(b':')?;
                        kv.push((k, self.value()?));
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Value::Obj(kv));
                            }
                            _ => return Err(format!("bad object at {}", self.i)),
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut a = Vec::new();
                    self.ws();
                    if self.b.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Value::Arr(a));
                    }
                    loop {
                        a.push(self.value()?);
                        self.ws();
                        match self.b.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Value::Arr(a));
                            }
                            _ => return Err(format!("bad array at {}", self.i)),
                        }
                    }
                }
                Some(b'"') => Ok(Value::Str(self.string()?)),
                Some(b't') => self.lit("true", Value::Bool(true)),
                Some(b'f') => self.lit("false", Value::Bool(false)),
                Some(b'n') => self.lit("null", Value::Null),
                Some(c) if c == b'-' || c.is_ascii_digit() => {
                    let start = self.i;
                    self.i += 1;
                    while self
                        .b
                        .get(self.i)
                        .is_some_and(|c| c.is_ascii_digit() || b".eE+-".contains(c))
                    {
                        self.i += 1;
                    }
                    let t = std::str::from_utf8(&self.b[start..self.i]).unwrap();
                    match t.parse::<i64>() {
                        Ok(i) => Ok(Value::Int(i)),
                        Err(_) => t
                            .parse::<f64>()
                            .map(Value::Float)
                            .map_err(|e| e.to_string()),
                    }
                }
                _ => Err(format!("unexpected input at {}", self.i)),
            }
        }
        fn hex4(&mut self) -> Result<u32, String> {
            let h = self.b.get(self.i..self.i + 4).ok_or("short \\u escape")?;
            self.i += 4;
            u32::from_str_radix(std::str::from_utf8(h).map_err(|e| e.to_string())?, 16)
                .map_err(|e| e.to_string())
        }
        fn string(&mut self) -> Result<String, String> {
            if self.b.get(self.i) != Some(&b'"') {
                return Err(format!("expected string at {}", self.i));
            }
            self.i += 1;
            let mut out = String::new();
            loop {
                let start = self.i;
                while self.b.get(self.i).is_some_and(|&c| c != b'"' && c != b'\\') {
                    self.i += 1;
                }
                out.push_str(
                    std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?,
                );
                match self.b.get(self.i) {
                    Some(b'"') => {
                        self.i += 1;
                        return Ok(out);
                    }
                    Some(b'\\') => {
                        let esc = *self.b.get(self.i + 1).ok_or("bad escape")?;
                        self.i += 2;
                        match esc {
                            b'n' => out.push('\n'),
                            b't' => out.push('\t'),
                            b'r' => out.push('\r'),
                            b'b' => out.push('\u{8}'),
                            b'f' => out.push('\u{c}'),
                            b'u' => {
                                let mut cp = self.hex4()?;
                                if (0xd800..0xdc00).contains(&cp)
                                    && self.b[self.i..].starts_with(b"\\u")
                                {
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    cp = 0x10000
                                        + ((cp - 0xd800) << 10)
                                        + (lo.wrapping_sub(0xdc00) & 0x3ff);
                                }
                                out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                            }
                            other => out.push(other as char),
                        }
                    }
                    _ => return Err("unterminated string".into()),
                }
            }
        }
    }
}
