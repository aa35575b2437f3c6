//! The pymalloc heap reading against the target's own account of it
//! (`sys._debugmallocstats()`), on every interpreter of the machine: the
//! arena count read from outside matches what the interpreter prints, and
//! rises by about the expected amount when the target allocates many small
//! objects. Binaries stripped of `.symtab` on 3.8–3.11 (Debian's
//! python3.11) must say the heap is unavailable rather than guess.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pyrometer_cpython::{locate, read_pymalloc, HeapLocation};
use pyrometer_process::Process;
use pyrometer_testsupport::{par_map, require_all, spawn_python, Interp};

const TARGET: &str = r##"
import json, os, re, sys, tempfile, time

def arenas():
    # _debugmallocstats writes to the C stderr: catch fd 2 in a file.
    with tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode()
    current = int(re.search(r"# arenas allocated current\s*=\s*([\d,]+)", text).group(1).replace(",", ""))
    size = int(re.search(r"arenas \* (\d+) bytes/arena", text).group(1))
    return current, size

go = sys.argv[1]
n, size = arenas()
print(json.dumps({"pid": os.getpid(), "arenas": n, "arena_size": size}), flush=True)
deadline = time.time() + 120
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.01)
# 400k small tuples of two distinct ints: about 30 MB in pymalloc blocks.
keep = [(i, -i) for i in range(1000, 401000)]
n, _ = arenas()
print(json.dumps({"arenas": n}), flush=True)
while time.time() < deadline:
    time.sleep(0.05)
"##;

fn target_script() -> PathBuf {
    let path = std::env::temp_dir().join("pyrometer-pymalloc-live-target.py");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(TARGET) {
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&tmp, TARGET).expect("write the target script");
        std::fs::rename(&tmp, &path).expect("install the target script");
    }
    path
}

fn field(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\": ");
    let start = json.find(&pat).unwrap_or_else(|| panic!("{key} in {json}")) + pat.len();
    json[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{key} in {json}"))
}

/// Read the arena count until it is within one arena of `want` (the
/// target's own count, taken a moment apart), or the deadline passes.
fn read_near(process: &Process, interp: &pyrometer_cpython::Interpreter, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = read_pymalloc(process, &interp.layout, &interp.heap).expect("pymalloc reading");
        if r.arenas.abs_diff(want) <= 1 || Instant::now() > deadline {
            assert_eq!(r.bytes, r.arenas * interp.layout.arena_size);
            return r.arenas;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check(interp: &Interp) -> Result<String, String> {
    let go = std::env::temp_dir().join(format!(
        "pyrometer-pymalloc-go-{}-{}",
        std::process::id(),
        interp.label
    ));
    let _ = std::fs::remove_file(&go);
    let go_arg = go.to_string_lossy().into_owned();
    let (child, ready) = spawn_python(interp, &target_script(), &[&go_arg]);
    let process = Process::attach(child.pid()).map_err(|e| e.to_string())?;
    let located = locate(&process).map_err(|e| e.to_string())?;
    let stripped = interp.label.starts_with("debian");
    if stripped {
        // Debian strips .symtab: on 3.11 there is nothing to find the
        // count by, and that is said, not guessed.
        return match &located.heap {
            HeapLocation::Unavailable(why) if why.contains("narenas_currently_allocated") => {
                Ok(format!("unavailable as expected: {why}"))
            }
            other => Err(format!(
                "stripped 3.11: expected unavailable, got {other:?}"
            )),
        };
    }
    let size = field(&ready, "arena_size");
    if size != located.layout.arena_size {
        return Err(format!(
            "ARENA_SIZE: layout {}, interpreter {size}",
            located.layout.arena_size
        ));
    }
    let before_want = field(&ready, "arenas");
    let before = read_near(&process, &located, before_want);
    if before.abs_diff(before_want) > 1 {
        return Err(format!(
            "arenas before: read {before}, interpreter says {before_want}"
        ));
    }
    std::fs::write(&go, b"go").map_err(|e| e.to_string())?;
    let line = child.next_line(Duration::from_secs(60))?;
    let _ = std::fs::remove_file(&go);
    let after_want = field(&line, "arenas");
    let after = read_near(&process, &located, after_want);
    if after.abs_diff(after_want) > 1 {
        return Err(format!(
            "arenas after: read {after}, interpreter says {after_want}"
        ));
    }
    // 400k tuples (56 bytes with the GC header on 3.8+) and 800k ints
    // (28-32 bytes): at least 40 MB in blocks; pools waste some.
    let grown = after.saturating_sub(before) * size;
    if grown < 30 << 20 {
        return Err(format!(
            "arenas rose from {before} to {after} ({} MiB), expected at least 30 MiB",
            grown >> 20
        ));
    }
    Ok(format!("{before} -> {after} arenas of {size} bytes"))
}

#[test]
fn pymalloc_arenas_match_the_interpreters_own_count() {
    let interps = require_all();
    let results = par_map(&interps, 2, check);
    let mut failed = Vec::new();
    for (i, r) in interps.iter().zip(&results) {
        eprintln!("{:<24} {:?}", i.label, r);
        if let Err(e) = r {
            failed.push(format!("{}: {e}", i.label));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(results.iter().filter(|r| r.is_ok()).count() >= interps.len());
}
