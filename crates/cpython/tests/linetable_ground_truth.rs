//! Ground truth for `pyrometer_cpython::linetable` against real CPython.
//!
//! Runs `tests/data/dump_lines.py` under every CPython on the machine; the
//! script compiles thousands of code objects (stdlib modules and synthetic
//! edge cases, every nested code object) and reports, through
//! `PyCode_Addr2Line` via ctypes, the line CPython gives for every
//! instruction offset. This test checks that `LineTable::line_at` (and the
//! one-shot `line_of`) agree on every offset of every code object, and with
//! the line the Python-level API gives for every code unit: `co_positions()`
//! (3.11+), `co_lines()` (3.10) or `dis.findlinestarts()` (3.8/3.9).
//!
//! Interpreters come from `pyrometer_testsupport::require_all()`: every
//! pyenv 3.8–3.13 install and Debian's `/usr/bin/python3.11`, one of each of
//! 3.8 … 3.13 and Debian's being expected (a missing one is a **failure**,
//! not a skip); `PYROMETER_EXPECTED_PYTHONS=/path/a,/path/b` names exactly
//! the interpreters to test instead.
//!
//! `PYROMETER_DUMP_LINES_MODULES=N` limits the script to its first N
//!   stdlib modules (default 40) to trade coverage for time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pyrometer_cpython::layout::LineTableFormat;
use pyrometer_cpython::linetable::{line_of, LineTable};
use pyrometer_testsupport::serde_json::{self, Value};

const ENV_MODULES: &str = "PYROMETER_DUMP_LINES_MODULES";
const DEFAULT_MODULES: usize = 40;

#[test]
fn line_tables_match_cpython() {
    let pythons: Vec<PathBuf> = pyrometer_testsupport::require_all()
        .into_iter()
        .map(|i| i.path)
        .collect();
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
                    "{:<40} {:>8} {:<13} {:<17} {:>6} code objects {:>9} offsets checked, {:>9} units against {:<18} {:>5.1}s",
                    py.display(),
                    rep.version,
                    format!("{:?}", rep.format),
                    rep.source,
                    rep.code_objects,
                    rep.offsets,
                    rep.api_units,
                    rep.api,
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

struct Report {
    version: String,
    format: LineTableFormat,
    source: String,
    /// The Python-level API compared too, and the code units it covered.
    api: String,
    api_units: u64,
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
    let header = parse_json(lines.next().ok_or("empty output")?)?;
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
    let api = header
        .get("api")
        .and_then(|v| v.as_str())
        .ok_or("no api in the header")?
        .to_string();
    let source = header
        .get("source")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();

    let mut rep = Report {
        version: version.to_string(),
        format,
        source,
        api: api.clone(),
        api_units: 0,
        code_objects: 0,
        offsets: 0,
        secs: 0.0,
        mismatch_count: 0,
        mismatches: Vec::new(),
    };
    let api_how = format!("line_at vs {api}");
    for line in lines {
        let v = parse_json(line)?;
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
        // The Python-level API, code unit by code unit.
        let api_rle = field("api_lines")?.as_array().ok_or("api_lines")?;
        let mut api_units = 0u64;
        let mut unit_off = 0u64;
        for pair in api_rle.chunks(2) {
            let [l, n] = pair else {
                return Err(format!("odd api_lines RLE in {name}"));
            };
            let raw = l.as_i64().ok_or("api line")?;
            let want = (raw != -1).then_some(raw as i32);
            for _ in 0..n.as_i64().ok_or("api count")? {
                let got = lt.line_at(unit_off);
                if got != want {
                    mismatch(unit_off, want, got, &api_how);
                }
                unit_off += 2;
                api_units += 1;
            }
        }
        if unit_off != off {
            return Err(format!(
                "{name}: {api} covers {unit_off} bytes, Addr2Line {off}"
            ));
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
        rep.api_units += api_units;
        rep.offsets += checked.len() as u64;
    }
    if rep.code_objects < 1000 {
        return Err(format!("only {} code objects dumped", rep.code_objects));
    }
    rep.secs = t0.elapsed().as_secs_f64();
    Ok(rep)
}

fn parse_json(line: &str) -> Result<Value, String> {
    serde_json::from_str(line).map_err(|e| format!("bad JSON ({e}): {line:.200}"))
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
