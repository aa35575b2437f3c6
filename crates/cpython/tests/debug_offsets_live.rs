//! Live interpreters: the layout derived from a running 3.13+'s own
//! `_Py_DebugOffsets` against the static table, and how the runtime and the
//! version are found when symbols (or more) are missing — what a stripped,
//! embedded or unusually named build leaves to go on.
//!
//! Every interpreter of the machine is used (see `pyrometer-testsupport`:
//! pyenv 3.8–3.13 and Debian's `/usr/bin/python3.11`, or
//! `PYROMETER_EXPECTED_PYTHONS`); a missing one fails the tests.

use std::path::{Path, PathBuf};

use pyrometer_cpython::debug_offsets;
use pyrometer_cpython::discover::{
    layout_for, locate_with, LocateOptions, RuntimeSource, VersionSource,
};
use pyrometer_cpython::layout::{FrameModel, FrameRoot, LongModel};
use pyrometer_cpython::{locate, Interpreter, Layout, StackReader, Version};
use pyrometer_process::{Binary, Process};
use pyrometer_testsupport::{par_map, require_all, spawn_python, Interp};

const TARGET: &str = r#"
import json, os, sys, threading, time

def idle_loop():
    while True:
        time.sleep(0.05)  # IDLE_LINE

print(json.dumps({"pid": os.getpid(), "version": list(sys.version_info[:3])}), flush=True)
idle_loop()
"#;

/// The target script, at one fixed path (written once per test binary,
/// atomically, so concurrent test binaries share it and nothing accumulates
/// in /tmp).
fn target_script() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::env::temp_dir().join("pyrometer-debug-offsets-live-target.py");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(TARGET) {
            let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
            std::fs::write(&tmp, TARGET).expect("write the target script");
            std::fs::rename(&tmp, &path).expect("install the target script");
        }
        path
    })
    .clone()
}

fn idle_line() -> i32 {
    TARGET
        .lines()
        .position(|l| l.contains("# IDLE_LINE"))
        .map(|i| i as i32 + 1)
        .expect("marker")
}

/// The innermost frame of the thread sitting in `idle_loop`, as
/// `(name, file, line)`, read with `interp`. The target prints its ready
/// line just before it calls `idle_loop`, so the first reads may still
/// find it at module level.
fn idle_frame(process: &Process, interp: Interpreter) -> (String, String, Option<i32>) {
    let mut reader = StackReader::new(process, interp);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let threads = reader.read_all().expect("read the stacks");
        let found = threads
            .iter()
            .filter_map(|t| t.frames.first())
            .find(|f| f.name.as_ref() == "idle_loop");
        if let Some(f) = found {
            return (f.name.to_string(), f.code.filename.to_string(), f.line);
        }
        if std::time::Instant::now() > deadline {
            panic!("no thread in idle_loop: {threads:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn version_of(i: &Interp) -> Version {
    let (a, b, c) = i.version;
    Version::new(a, b, c)
}

// ---------------------------------------------------------------------------
// 3.13+: the interpreter's own table against the static layout.

/// Every field both the table and the static 3.13 layout carry, as
/// (table field, value from the static layout). Fields the layout keeps
/// relative to another struct are converted to the table's convention.
fn shared_fields(l: &Layout) -> Vec<(&'static str, u64)> {
    let FrameRoot::Direct { current_frame } = l.frame_root else {
        panic!("3.13+ reaches frames through tstate->current_frame");
    };
    let FrameModel::Interpreter {
        previous,
        executable,
        instr_ptr,
        localsplus,
        owner,
        ..
    } = l.frame
    else {
        panic!("3.13+ has interpreter frames");
    };
    let LongModel::Tagged { lv_tag } = l.long_model else {
        panic!("3.13+ has tagged ints");
    };
    let gil = l.interp_gil_inline.expect("3.13+ has an inline GIL");
    vec![
        (
            "runtime_state.interpreters_head",
            l.runtime_interpreters_head,
        ),
        ("interpreter_state.next", l.interp_next),
        ("interpreter_state.threads_head", l.interp_threads_head),
        ("interpreter_state.imports_modules", l.interp_modules),
        ("interpreter_state.gil_runtime_state", gil),
        (
            "interpreter_state.gil_runtime_state_locked",
            gil + l.gil_locked,
        ),
        (
            "interpreter_state.gil_runtime_state_holder",
            gil + l.gil_last_holder,
        ),
        ("thread_state.next", l.tstate_next),
        ("thread_state.interp", l.tstate_interp),
        ("thread_state.current_frame", current_frame),
        ("thread_state.thread_id", l.tstate_thread_id),
        (
            "thread_state.native_thread_id",
            l.tstate_native_thread_id.expect("3.11+"),
        ),
        ("interpreter_frame.previous", previous),
        ("interpreter_frame.executable", executable),
        ("interpreter_frame.instr_ptr", instr_ptr),
        ("interpreter_frame.localsplus", localsplus),
        ("interpreter_frame.owner", owner),
        ("code_object.filename", l.code_filename),
        ("code_object.name", l.code_name),
        ("code_object.qualname", l.code_qualname.expect("3.11+")),
        ("code_object.linetable", l.code_linetable),
        ("code_object.firstlineno", l.code_firstlineno),
        ("code_object.argcount", l.code_argcount),
        ("code_object.localsplusnames", l.code_varnames),
        (
            "code_object.localspluskinds",
            l.code_localspluskinds.expect("3.11+"),
        ),
        (
            "code_object.co_code_adaptive",
            l.code_code_adaptive.expect("3.11+"),
        ),
        ("pyobject.ob_type", l.ob_type),
        ("type_object.tp_name", l.type_tp_name),
        ("type_object.tp_flags", l.type_tp_flags),
        ("tuple_object.ob_item", l.tuple_item),
        ("tuple_object.ob_size", l.tuple_size),
        ("list_object.ob_item", l.list_item),
        ("list_object.ob_size", l.list_size),
        ("dict_object.ma_keys", l.dict_keys),
        ("dict_object.ma_values", l.dict_values),
        ("float_object.ob_fval", l.float_fval),
        ("long_object.lv_tag", lv_tag),
        ("long_object.ob_digit", l.long_digit),
        ("bytes_object.ob_size", l.bytes_size),
        ("bytes_object.ob_sval", l.bytes_sval),
        ("unicode_object.state", l.unicode_state),
        ("unicode_object.length", l.unicode_length),
        ("unicode_object.asciiobject_size", l.unicode_ascii_data),
    ]
}

#[test]
fn live_debug_offsets_match_the_static_layout() {
    let interps: Vec<Interp> = require_all()
        .into_iter()
        .filter(|i| i.minor() >= (3, 13))
        .collect();
    assert!(
        !interps.is_empty(),
        "no interpreter >= 3.13 on this machine (pyenv 3.13 is expected)"
    );
    let script = target_script();
    for i in &interps {
        let (child, _ready) = spawn_python(i, &script, &[]);
        let process = Process::attach(child.pid()).expect("attach");
        let found = locate(&process).expect("locate");
        assert_eq!(found.version, version_of(i), "{i}");
        let table = debug_offsets::read(&process, found.runtime)
            .expect("a valid table")
            .expect("3.13+ has the cookie");
        assert_eq!(
            Version::from_hex(table.version),
            found.version,
            "{i}: Py_Version and the table agree"
        );
        assert!(!table.free_threaded);

        let fixed = Layout::for_version(found.version).expect("a static layout");
        // Field by field first, for a readable failure...
        let mismatches: Vec<String> = shared_fields(&fixed)
            .into_iter()
            .filter_map(|(name, want)| {
                let got = table.get(name);
                (got != Some(want)).then(|| format!("{name}: table {got:?}, static {want}"))
            })
            .collect();
        assert!(mismatches.is_empty(), "{i}:\n  {}", mismatches.join("\n  "));
        // ...then the whole structs: what the table does not carry comes
        // from the static layout, so there is no legitimate difference.
        let from_table = layout_for(found.version, Some(&table)).expect("layout from the table");
        assert_eq!(from_table, fixed, "{i}");
        assert_eq!(found.layout, fixed, "{i}: locate used the table");

        // And the static table reads the live process exactly like the
        // located interpreter.
        let (name, file, line) = idle_frame(&process, found.clone());
        assert_eq!(
            (name.as_str(), file.as_str(), line),
            (
                "idle_loop",
                script.to_str().expect("utf-8"),
                Some(idle_line())
            )
        );
        let static_interp = Interpreter {
            layout: fixed,
            ..found
        };
        assert_eq!(idle_frame(&process, static_interp), (name, file, line));
        println!(
            "{i}: {} table fields match",
            shared_fields(&from_table).len()
        );
    }
}

// ---------------------------------------------------------------------------
// Stripped binaries: the `.PyRuntime` section, then the scan.

fn opts(symbols: bool, section: bool) -> LocateOptions {
    LocateOptions {
        use_symbols: symbols,
        use_section: section,
        ..LocateOptions::default()
    }
}

/// Whether the binary holding the interpreter has a `.PyRuntime` section.
fn has_runtime_section(process: &Process, binary: &Path) -> bool {
    let maps = process.maps().expect("maps");
    let file = process.path_in_root(binary);
    Binary::load(&file, binary, &maps)
        .expect("load the interpreter binary")
        .section(".PyRuntime")
        .is_some()
}

#[test]
fn the_runtime_is_found_without_symbols_by_section_then_by_scan() {
    let interps = require_all();
    let script = target_script();
    let report = par_map(&interps, 4, |i| {
        let (child, _ready) = spawn_python(i, &script, &[]);
        let process = Process::attach(child.pid()).expect("attach");
        let default = locate(&process).expect("locate");
        assert_eq!(default.runtime_source, RuntimeSource::Symbol, "{i}");
        let want_frame = idle_frame(&process, default.clone());
        assert_eq!(want_frame.2, Some(idle_line()), "{i}");

        // No symbols: the section when the build has one (3.10+), else the scan.
        let section = has_runtime_section(&process, &default.binary);
        assert_eq!(section, i.minor() >= (3, 10), "{i}: .PyRuntime presence");
        let no_symbols = locate_with(&process, &opts(false, true)).expect("without symbols");
        let want_source = if section {
            RuntimeSource::Section
        } else {
            RuntimeSource::Scan
        };
        assert_eq!(no_symbols.runtime_source, want_source, "{i}");
        assert_eq!(no_symbols.runtime, default.runtime, "{i}: same _PyRuntime");
        assert_eq!(
            no_symbols.code_type, None,
            "{i}: PyCode_Type is a symbol too"
        );

        // Neither symbols nor the section: the bounded scan.
        let scanned = locate_with(&process, &opts(false, false)).expect("by scan");
        assert_eq!(scanned.runtime_source, RuntimeSource::Scan, "{i}");
        assert_eq!(scanned.runtime, default.runtime, "{i}: same _PyRuntime");
        assert_eq!(scanned.version.minor_pair(), default.version.minor_pair());
        assert_eq!(scanned.layout, default.layout, "{i}");

        // Nothing left: no interpreter.
        let none = locate_with(
            &process,
            &LocateOptions {
                use_scan: false,
                ..opts(false, false)
            },
        );
        assert!(none.is_err(), "{i}: {none:?}");

        // Stacks read the same whichever way the runtime was found (and
        // without PyCode_Type, code objects are recognized by type name).
        assert_eq!(idle_frame(&process, no_symbols), want_frame, "{i}");
        assert_eq!(idle_frame(&process, scanned), want_frame, "{i}");
        format!(
            "{i}: symbol, {} and scan agree on _PyRuntime {:#x}",
            if section {
                ".PyRuntime"
            } else {
                "(no .PyRuntime) scan"
            },
            default.runtime
        )
    });
    for line in report {
        println!("{line}");
    }
}

// ---------------------------------------------------------------------------
// Version detection fallbacks.

#[test]
fn the_version_is_found_without_py_version() {
    let interps = require_all();
    let script = target_script();
    let report = par_map(&interps, 4, |i| {
        let (child, _ready) = spawn_python(i, &script, &[]);
        let process = Process::attach(child.pid()).expect("attach");
        let want = version_of(i);
        let mut lines = Vec::new();

        let default = locate(&process).expect("locate");
        assert_eq!(default.version, want, "{i}");
        // Py_Version exists from 3.11.
        let want_default = if i.minor() >= (3, 11) {
            VersionSource::PyVersionSymbol
        } else {
            VersionSource::VersionString
        };
        assert_eq!(default.version_source, want_default, "{i}");

        // Without Py_Version: the debug offsets (3.13+), else `.rodata`.
        let o = LocateOptions {
            use_py_version: false,
            ..LocateOptions::default()
        };
        let found = locate_with(&process, &o).expect("without Py_Version");
        let want_source = if i.minor() >= (3, 13) {
            VersionSource::DebugOffsets
        } else {
            VersionSource::VersionString
        };
        assert_eq!(
            (found.version, found.version_source),
            (want, want_source),
            "{i}"
        );
        lines.push(format!(
            "{i}: without Py_Version: {want_source:?} says {}",
            found.version
        ));

        // Without symbols at all (a stripped binary): the same.
        let found = locate_with(&process, &opts(false, true)).expect("stripped");
        assert_eq!(
            (found.version, found.version_source),
            (want, want_source),
            "{i}"
        );

        // Without Py_Version and the table: the `.rodata` version string.
        let o = LocateOptions {
            use_py_version: false,
            use_debug_offsets_version: false,
            ..LocateOptions::default()
        };
        let found = locate_with(&process, &o).expect("from .rodata");
        assert_eq!(
            (found.version, found.version_source),
            (want, VersionSource::VersionString),
            "{i}"
        );

        // Nothing but the file name: the minor version, micro unknown.
        let o = LocateOptions {
            use_py_version: false,
            use_debug_offsets_version: false,
            use_version_string: false,
            ..LocateOptions::default()
        };
        let found = locate_with(&process, &o).expect("from the file name");
        assert_eq!(found.version_source, VersionSource::FileName, "{i}");
        assert_eq!(found.version, Version::new(3, want.minor, 0), "{i}");
        // The layout of a minor does not depend on its micro.
        assert_eq!(found.layout.version.minor, want.minor);
        let (name, _, line) = idle_frame(&process, found.clone());
        assert_eq!(
            (name.as_str(), line),
            ("idle_loop", Some(idle_line())),
            "{i}"
        );
        lines.push(format!(
            "{i}: file name {} says 3.{}",
            found.binary.display(),
            want.minor
        ));
        lines.join("\n")
    });
    for line in report {
        println!("{line}");
    }
}
