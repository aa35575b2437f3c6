//! Every way Python calls Python keeps its stack, on every interpreter of
//! the machine (pyenv 3.8–3.13 and Debian's /usr/bin/python3.11): the
//! reader drops a stack whose caller is not stopped on a call instruction
//! (a torn read, 3.11+), and must never drop a real one.
//!
//! `tests/data/call_kinds_target.py` parks one thread under each kind of
//! call (plain, keyword, star, method, super(), property, `__getattribute__`,
//! `__getitem__`, `__init__`, generators, `yield from`, `await`, calls back
//! from C, `throw()` into delegating generators and coroutines; in a second
//! run, a thread under `sys.settrace`), each path specialized first, and
//! prints each thread's frames as `sys._current_frames()` sees them. Parked
//! stacks do not change: every read from outside must give those frames,
//! and none may come back torn. Then the same stacks are read through a
//! memory that moves one caller off its call (or, 3.13+, clears its return
//! offset): that read must come back torn, unless the callee was entered
//! from C.

use std::collections::BTreeMap;
use std::path::Path;

use pyrometer_cpython::layout::FrameModel;
use pyrometer_cpython::{locate, StackReader};
use pyrometer_process::{Memory, MemoryError, Process};
use pyrometer_testsupport::serde_json::{self, Value};
use pyrometer_testsupport::{par_map, require_all, spawn_python, Interp};

/// Reads of the parked threads per interpreter.
const READS: usize = 20;

/// A live process read with some bytes replaced.
struct Patched<'a> {
    inner: &'a Process,
    patches: Vec<(u64, Vec<u8>)>,
}

impl Memory for Patched<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.inner.read(addr, buf)?;
        let end = addr + buf.len() as u64;
        for (at, bytes) in &self.patches {
            for (k, b) in bytes.iter().enumerate() {
                let a = at + k as u64;
                if a >= addr && a < end {
                    buf[(a - addr) as usize] = *b;
                }
            }
        }
        Ok(())
    }
}

/// Problems found on `i`, one line each, and how many patched reads were
/// checked. `traced`: the target's run under `sys.settrace` (3.12+: its
/// code objects instrumented), where no read is patched.
fn check(i: &Interp, traced: bool) -> (Vec<String>, usize) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/call_kinds_target.py");
    let args: &[&str] = if traced { &["traced"] } else { &[] };
    let (child, ready) = spawn_python(i, &script, args);
    let doc: Value = serde_json::from_str(&ready).unwrap_or_else(|e| panic!("{i}: {ready}: {e}"));
    let threads = doc["threads"]
        .as_object()
        .unwrap_or_else(|| panic!("{i}: no threads in {ready}"));
    assert_eq!(
        doc["parked"].as_u64(),
        Some(threads.len() as u64),
        "{i}: not every path parked: {ready}"
    );
    let want: BTreeMap<u64, (String, Vec<String>)> = threads
        .iter()
        .map(|(id, t)| {
            let frames = t["frames"]
                .as_array()
                .unwrap_or_else(|| panic!("{i}: no frames for {id}"))
                .iter()
                .map(|f| f.as_str().unwrap_or("?").to_string())
                .collect();
            let path = t["path"].as_str().unwrap_or("?").to_string();
            (id.parse().expect("a thread id"), (path, frames))
        })
        .collect();
    let process = Process::attach(child.pid()).expect("attach");
    let interp = locate(&process).expect("locate");
    let mut reader = StackReader::new(&process, interp);
    let mut problems = Vec::new();
    for read in 0..READS {
        // Strict: any thread's stack refused fails the read.
        let stacks = match reader.read_all() {
            Ok(stacks) => stacks,
            Err(e) => {
                problems.push(format!("{i}: read {read}: {e}"));
                continue;
            }
        };
        for (id, (path, frames)) in &want {
            let Some(st) = stacks.iter().find(|s| s.thread_id == *id) else {
                problems.push(format!("{i}: read {read}: thread {path} not found"));
                continue;
            };
            if st.torn {
                problems.push(format!("{i}: read {read}: {path} dropped as torn"));
                continue;
            }
            let got: Vec<&str> = st.frames.iter().map(|f| &*f.code.name).collect();
            if got != *frames {
                problems.push(format!(
                    "{i}: read {read}: {path}: got {got:?}, want {frames:?}"
                ));
            }
        }
    }
    problems.dedup();
    if traced {
        return (problems, 0);
    }

    // The `plain` thread: leaf ← plain ← run … Move `plain`'s instruction
    // pointer to its first instruction (RESUME, no call), or clear its
    // return offset: each is a stack that never existed.
    let FrameModel::Interpreter {
        instr_ptr,
        return_offset,
        entry_flag,
        ..
    } = reader.layout().frame
    else {
        return (problems, 0);
    };
    let stacks = reader.read_all().expect("read the stacks");
    let plain_id = want
        .iter()
        .find(|(_, (path, _))| path == "plain")
        .map(|(id, _)| *id)
        .expect("a plain thread");
    let st = stacks
        .iter()
        .find(|s| s.thread_id == plain_id)
        .expect("the plain thread");
    let (leaf, plain) = (&st.frames[0], &st.frames[1]);
    assert_eq!(&*plain.code.name, "plain", "{i}");
    let mut cases = vec![(
        "caller on RESUME",
        vec![(
            plain.frame_addr + instr_ptr,
            plain.code.code_start.to_le_bytes().to_vec(),
        )],
        true,
    )];
    if let (Some(off), true) = (return_offset, i.minor() >= (3, 13)) {
        cases.push((
            "caller with return offset 0",
            vec![(plain.frame_addr + off, vec![0, 0])],
            true,
        ));
    }
    if let Some(off) = entry_flag {
        // 3.11: a callee entered from C may have a caller anywhere.
        cases.push((
            "caller on RESUME, callee entered from C",
            vec![
                (
                    plain.frame_addr + instr_ptr,
                    plain.code.code_start.to_le_bytes().to_vec(),
                ),
                (leaf.frame_addr + off, vec![1]),
            ],
            false,
        ));
    }
    let checked = cases.len();
    for (what, patches, torn) in cases {
        let patched = Patched {
            inner: &process,
            patches,
        };
        let interp = locate(&process).expect("locate");
        let mut reader = StackReader::new(&patched, interp);
        let stacks = reader
            .read_all_filtered(|_| true)
            .expect("read the patched stacks");
        let st = stacks
            .iter()
            .find(|s| s.thread_id == plain_id)
            .expect("the plain thread");
        if st.torn != torn {
            problems.push(format!(
                "{i}: {what}: torn {}, want {torn} (frames {:?})",
                st.torn,
                st.frames.iter().map(|f| &*f.code.name).collect::<Vec<_>>()
            ));
        }
        // The other threads are untouched.
        let others_torn = stacks
            .iter()
            .filter(|s| s.thread_id != plain_id && s.torn)
            .count();
        if others_torn > 0 {
            problems.push(format!("{i}: {what}: {others_torn} other thread(s) torn"));
        }
    }
    (problems, checked)
}

#[test]
fn every_kind_of_call_keeps_its_whole_stack() {
    let interps = require_all();
    let results = par_map(&interps, 3, |i| {
        let (mut problems, patched) = check(i, false);
        problems.extend(check(i, true).0);
        (i.clone(), (problems, patched))
    });
    let mut failures = Vec::new();
    for (i, (problems, patched)) in results {
        println!(
            "{i}: {} problem(s) (untraced and traced runs), {patched} patched read(s) checked",
            problems.len()
        );
        // From 3.11 callers are checked: every such interpreter made some.
        if i.minor() >= (3, 11) && patched == 0 {
            failures.push(format!("{i}: no torn stack was made"));
        }
        failures.extend(problems);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs `tools/opcodes/cache_table.py ARGS` in `i` and returns its lines.
fn cache_table(i: &Interp, args: &[&str]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/opcodes/cache_table.py");
    let out = std::process::Command::new(&i.path)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{i}: {e}"));
    assert!(
        out.status.success(),
        "{i}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The tables of `layout/calls.rs` are what `tools/opcodes/cache_table.py`
/// prints from each installed interpreter's `dis`/`opcode` modules: the
/// cache counts (the walk over a code object's instructions steps over the
/// right units) and the call instructions (every specialized and
/// instrumented form of each family that pushes frames inline, with its
/// length).
#[test]
fn cache_and_call_tables_match_each_interpreters_opcode_module() {
    use pyrometer_cpython::layout::CallOp;
    let interps = require_all();
    let mut checked = Vec::new();
    for i in interps.iter().filter(|i| i.minor() >= (3, 11)) {
        let mut want = [0u8; 256];
        for line in cache_table(i, &[]) {
            // `    (N, &[a, b, c]),`
            let line = line.trim().trim_start_matches('(').trim_end_matches("]),");
            let (n, ops) = line
                .split_once(", &[")
                .unwrap_or_else(|| panic!("{i}: {line}"));
            let n: u8 = n.parse().expect("a count");
            for op in ops.split(", ") {
                want[op.parse::<usize>().expect("an opcode")] = n;
            }
        }
        let mut want_calls = [CallOp::NotCall; 256];
        for line in cache_table(i, &["--calls"]) {
            // `OPCODE UNITS SETS_RETURN_OFFSET` or `OPCODE hidden`
            let fields: Vec<&str> = line.split(' ').collect();
            let op: usize = fields[0].parse().expect("an opcode");
            want_calls[op] = match fields[1..] {
                ["hidden"] => CallOp::Hidden,
                [units, sets] => CallOp::Call {
                    units: units.parse().expect("units"),
                    sets_return_offset: sets == "1",
                },
                _ => panic!("{i}: {line}"),
            };
        }
        let (major, minor) = i.minor();
        let layout = pyrometer_cpython::layout::known_layout(pyrometer_cpython::Version::new(
            major, minor, 0,
        ))
        .unwrap_or_else(|| panic!("{i}: no layout"));
        let FrameModel::Interpreter {
            calls: Some(calls), ..
        } = layout.frame
        else {
            panic!("{i}: no call table");
        };
        for op in 0..=255u8 {
            let got = calls.caches_after(op);
            let expect = match calls.op(op) {
                CallOp::Hidden => None,
                _ => Some(want[op as usize]),
            };
            assert_eq!(got, expect, "{i}: caches after opcode {op}");
            assert_eq!(
                calls.op(op),
                want_calls[op as usize],
                "{i}: call opcode {op}"
            );
        }
        checked.push(i.to_string());
    }
    println!("cache and call tables checked on: {}", checked.join(", "));
    assert!(!checked.is_empty(), "no 3.11+ interpreter");
}
