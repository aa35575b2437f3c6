//! CPython 3.13, 3.14 and 3.15 through their `_Py_DebugOffsets` tables, on
//! synthetic images (`pyrometer_cpython::synthetic`): 3.14 and 3.15 cannot
//! run on the test machine, and 3.13's image doubles as a cross-check of the
//! static 3.13 layout (its table is a real 3.13.0 one).
//!
//! Each image is read by the production path only: `debug_offsets::read` →
//! `discover::layout_for` → `StackReader::new(image, Interpreter { .. })` →
//! `read_all`. The tests assert exact names, files, lines, thread ids and
//! the GIL holder; that interpreter-owned frames (3.13 CSTACK 3, 3.14
//! INTERPRETER 3 and CSTACK 4, 3.15 INTERPRETER 3 and the base frame) are
//! skipped; that tagged `f_executable`s (3.14+) are untagged; and that bad
//! tables (free-threaded, unknown pre-releases, offsets outside their
//! struct) and corrupt frame chains are refused with bounded work.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pyrometer_cpython::debug_offsets;
use pyrometer_cpython::discover::{layout_for, RuntimeSource, VersionSource};
use pyrometer_cpython::layout::FrameModel;
use pyrometer_cpython::synthetic::{
    build, CodeSpec, FrameSpec, Image, ImageSpec, ThreadSpec, OWNED_BY_CSTACK_314,
    OWNED_BY_GENERATOR, OWNED_BY_INTERPRETER_OR_CSTACK, OWNED_BY_THREAD, TAG_REFCNT,
};
use pyrometer_cpython::{CpythonError, Interpreter, Layout, StackReader, ThreadStack, Version};

// ---------------------------------------------------------------------------
// The scenario: two threads, five code objects.

const WORKER: usize = 0;
const MODULE: usize = 1;
const HANDLER: usize = 2;
const GEN: usize = 3;
const BOOTSTRAP: usize = 4;

fn codes() -> Vec<CodeSpec> {
    let mut worker = CodeSpec::new(
        "Worker.run",
        "/srv/app/worker.py",
        40,
        &[(1, 0), (4, 1), (6, 2), (3, 1)],
    );
    worker.argcount = 1;
    worker.varnames = vec!["self".into(), "item".into()];
    vec![
        worker,
        CodeSpec::new(
            "<module>",
            "/srv/app/main.py",
            1,
            &[(2, 0), (10, 5), (8, 3)],
        ),
        // Non-ASCII names: a latin-1 and a UCS-2 string.
        CodeSpec::new(
            "Handler.hándle_λ",
            "/srv/app/handlers/ünïcode.py",
            100,
            &[(3, 0), (12, 7), (2, -3)],
        ),
        CodeSpec::new(
            "gen_items",
            "/srv/app/gen.py",
            200,
            &[(2, 0), (5, 1), (9, 300)],
        ),
        CodeSpec::new(
            "Thread._bootstrap_inner",
            "/usr/lib/python3/threading.py",
            1000,
            &[(20, 10), (4, 2)],
        ),
    ]
}

/// What one Python frame should read as.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expect {
    name: String,
    filename: String,
    line: Option<i32>,
}

fn expect(codes: &[CodeSpec], code: usize, unit: u32) -> Expect {
    let c = &codes[code];
    Expect {
        name: c.qualname.clone(),
        filename: c.filename.clone(),
        line: c.line_at(unit),
    }
}

const MAIN_TID: u64 = 0x7f3a_2000_0740;
const MAIN_NATIVE: u64 = 4242;
const WORKER_TID: u64 = 0x7f3a_1f7f_e6c0;
const WORKER_NATIVE: u64 = 4250;

/// The spec for `version`: thread 0 (the newest, `threads.head`) is a worker
/// thread inside a generator; thread 1 is the main thread, holding the GIL.
/// Returns the spec and, per thread, the frames the reader must report.
fn scenario(version: Version) -> (ImageSpec, Vec<Vec<Expect>>) {
    let tagged = version.minor >= 14;
    let tag = |t: u64| if tagged { t } else { 0 };
    let entry = FrameSpec::Shim {
        owner: OWNED_BY_INTERPRETER_OR_CSTACK,
        code: None,
    };
    let codes = codes();

    let mut worker_frames = vec![
        FrameSpec::Python {
            code: GEN,
            unit: 4,
            owner: OWNED_BY_GENERATOR,
            tag: tag(TAG_REFCNT),
        },
        FrameSpec::Python {
            code: HANDLER,
            unit: 5,
            owner: OWNED_BY_THREAD,
            tag: 0,
        },
    ];
    if version.minor == 14 {
        // A C-stack frame that even points at real code: skipped by owner.
        worker_frames.push(FrameSpec::Shim {
            owner: OWNED_BY_CSTACK_314,
            code: Some(HANDLER),
        });
    }
    worker_frames.push(entry);
    worker_frames.push(FrameSpec::Python {
        code: BOOTSTRAP,
        unit: 21,
        owner: OWNED_BY_THREAD,
        tag: tag(TAG_REFCNT),
    });
    worker_frames.push(entry);

    let main_frames = vec![
        FrameSpec::Python {
            code: WORKER,
            unit: 7,
            owner: OWNED_BY_THREAD,
            tag: tag(TAG_REFCNT),
        },
        entry,
        FrameSpec::py(MODULE, 12),
        entry,
    ];

    let expected = vec![
        vec![
            expect(&codes, GEN, 4),
            expect(&codes, HANDLER, 5),
            expect(&codes, BOOTSTRAP, 21),
        ],
        vec![expect(&codes, WORKER, 7), expect(&codes, MODULE, 12)],
    ];

    let mut spec = ImageSpec::new(version);
    spec.codes = codes;
    spec.threads = vec![
        ThreadSpec {
            thread_id: WORKER_TID,
            native_id: WORKER_NATIVE,
            frames: worker_frames,
        },
        ThreadSpec {
            thread_id: MAIN_TID,
            native_id: MAIN_NATIVE,
            frames: main_frames,
        },
    ];
    spec.gil_holder = Some(1);
    // 3.15 says per thread who waits for the GIL.
    spec.gil_waiters = vec![0];
    (spec, expected)
}

// ---------------------------------------------------------------------------
// Reading an image the way `locate` + the sampler do.

fn interpreter_of(image: &Image, code_type: Option<u64>) -> Result<Interpreter, CpythonError> {
    let debug = debug_offsets::read(&image.memory, image.runtime)?
        .ok_or(CpythonError::Corrupt("no debug offsets cookie"))?;
    let version = Version::from_hex(debug.version);
    let layout = layout_for(version, Some(&debug))?;
    let heap = pyrometer_cpython::HeapLocation::find(&layout, image.runtime, None);
    Ok(Interpreter {
        version,
        layout,
        runtime: image.runtime,
        binary: PathBuf::from("<synthetic>"),
        code_type,
        runtime_source: RuntimeSource::Symbol,
        version_source: VersionSource::DebugOffsets,
        heap,
    })
}

fn read_all(image: &Image, code_type: Option<u64>) -> Result<Vec<ThreadStack>, CpythonError> {
    let interp = interpreter_of(image, code_type)?;
    let mut reader = StackReader::new(&image.memory, interp);
    reader.read_all()
}

fn frames_of(t: &ThreadStack) -> Vec<Expect> {
    t.frames
        .iter()
        .map(|f| Expect {
            name: f.name.to_string(),
            filename: f.code.filename.to_string(),
            line: f.line,
        })
        .collect()
}

fn check_scenario(version: Version) {
    let (spec, expected) = scenario(version);
    let image = build(&spec);

    let interp = interpreter_of(&image, Some(image.code_type)).expect("layout");
    assert_eq!(interp.version, version);
    let l = &interp.layout;
    // The layout is the table's, not a static one.
    let v = |k: &str| spec.offsets[k];
    assert_eq!(l.tstate_next, v("thread_state.next"));
    assert_eq!(l.tstate_thread_id, v("thread_state.thread_id"));
    assert_eq!(
        l.tstate_native_thread_id,
        Some(v("thread_state.native_thread_id"))
    );
    assert_eq!(
        l.runtime_interpreters_head,
        v("runtime_state.interpreters_head")
    );
    assert_eq!(l.interp_threads_head, v("interpreter_state.threads_head"));
    assert_eq!(l.tuple_item, v("tuple_object.ob_item"));
    assert_eq!(
        l.code_code_adaptive,
        Some(v("code_object.co_code_adaptive"))
    );
    assert_eq!(
        l.interp_gil_inline.map(|g| g + l.gil_locked),
        Some(v("interpreter_state.gil_runtime_state_locked"))
    );
    assert_eq!(
        l.interp_gil_inline.map(|g| g + l.gil_last_holder),
        Some(v("interpreter_state.gil_runtime_state_holder"))
    );
    let FrameModel::Interpreter {
        owner,
        skip_owners,
        executable_tag_mask,
        ..
    } = l.frame
    else {
        panic!("3.{} must use interpreter frames", version.minor)
    };
    assert_eq!(owner, v("interpreter_frame.owner"));
    let (want_skip, want_mask): (&[u8], u64) = match version.minor {
        13 => (&[3], 0),
        14 => (&[3, 4], 3),
        _ => (&[3], 3),
    };
    assert_eq!(skip_owners, want_skip);
    assert_eq!(executable_tag_mask, want_mask);

    // With PyCode_Type known (symbols), and without (type name check).
    for code_type in [Some(image.code_type), None] {
        let threads = read_all(&image, code_type).expect("walk");
        assert_eq!(threads.len(), 2, "3.{}: two threads", version.minor);
        let got: Vec<(u64, Option<i32>, u64, bool)> = threads
            .iter()
            .map(|t| (t.thread_id, t.native_id, t.tstate, t.holds_gil))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    WORKER_TID,
                    Some(WORKER_NATIVE as i32),
                    image.tstates[0],
                    false
                ),
                (MAIN_TID, Some(MAIN_NATIVE as i32), image.tstates[1], true),
            ],
            "3.{}: thread ids and GIL holder",
            version.minor
        );
        // Only 3.15 says per thread who waits for the GIL.
        let waiting: Vec<bool> = threads.iter().map(|t| t.gil_requested).collect();
        assert_eq!(
            waiting,
            vec![version.minor >= 15, false],
            "3.{}: gil_requested",
            version.minor
        );
        for (t, want) in threads.iter().zip(&expected) {
            assert_eq!(
                &frames_of(t),
                want,
                "3.{} thread {:#x}",
                version.minor,
                t.thread_id
            );
            assert!(!t.truncated);
        }
        // Code objects are read once and cached.
        let main = &threads[1];
        assert_eq!(main.frames[0].code.name.as_ref(), "run");
        assert_eq!(main.frames[0].code.first_line, 40);
        assert_eq!(main.frames[0].code.argcount, 1);
        assert_eq!(
            main.frames[0]
                .code
                .varnames
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            vec!["self", "item"]
        );
        assert_eq!(main.frames[0].frame_addr, image.frames[1][0]);
    }
}

#[test]
fn cpython_3_13_through_its_debug_offsets() {
    check_scenario(Version::new(3, 13, 0));
}

#[test]
fn cpython_3_14_through_its_debug_offsets() {
    check_scenario(Version::new(3, 14, 0));
}

#[test]
fn cpython_3_15_through_its_debug_offsets() {
    check_scenario(Version::new(3, 15, 0));
}

#[test]
fn release_candidates_and_later_micros_are_read() {
    for hex in [0x030e_00c2u64, 0x030f_00c1, 0x030e_06f0, 0x030d_0cf0] {
        let v = Version::from_hex(hex);
        let (mut spec, expected) = scenario(Version::new(3, v.minor, 0));
        spec.hex_version = hex;
        let image = build(&spec);
        let interp = interpreter_of(&image, Some(image.code_type)).expect("known release");
        assert_eq!(interp.version, v);
        let threads = read_all(&image, Some(image.code_type)).expect("walk");
        assert_eq!(frames_of(&threads[1]), expected[1], "{hex:#x}");
    }
}

/// The 3.13 image carries the table of a real 3.13.0: the layout built from
/// it must be the static 3.13 layout, and both read the image alike.
#[test]
fn the_3_13_table_agrees_with_the_static_layout() {
    let version = Version::new(3, 13, 0);
    let (spec, expected) = scenario(version);
    let image = build(&spec);
    let from_table = interpreter_of(&image, Some(image.code_type)).expect("layout");
    let fixed = Layout::for_version(version).expect("static 3.13");
    assert_eq!(from_table.layout, fixed);

    let static_interp = Interpreter {
        layout: fixed,
        ..from_table
    };
    let mut reader = StackReader::new(&image.memory, static_interp);
    let threads = reader.read_all().expect("walk with the static layout");
    for (t, want) in threads.iter().zip(&expected) {
        assert_eq!(&frames_of(t), want);
    }
}

// ---------------------------------------------------------------------------
// Tables that must be refused.

#[test]
fn free_threaded_builds_are_refused() {
    for minor in [13u8, 14, 15] {
        let (mut spec, _) = scenario(Version::new(3, minor, 0));
        spec.free_threaded = true;
        let image = build(&spec);
        let err = interpreter_of(&image, None).expect_err("free-threaded");
        assert!(
            matches!(err, CpythonError::FreeThreaded { .. }),
            "3.{minor}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("3.{minor}.0")) && msg.contains("free-threaded"),
            "{msg}"
        );
    }
}

#[test]
fn unknown_pre_releases_are_refused_clearly() {
    for (hex, shown) in [
        (0x030f_00a2u64, "3.15.0a2"),
        (0x030e_00b1, "3.14.0b1"),
        (0x030f_00b3, "3.15.0b3"),
        (0x030d_00a6, "3.13.0a6"),
    ] {
        let v = Version::from_hex(hex);
        let (mut spec, _) = scenario(Version::new(3, v.minor, 0));
        spec.hex_version = hex;
        let image = build(&spec);
        let err = debug_offsets::read(&image.memory, image.runtime).expect_err("pre-release");
        let CpythonError::UnsupportedVersion { version, .. } = &err else {
            panic!("{shown}: {err:?}");
        };
        assert_eq!(version, shown);
        let msg = err.to_string();
        assert!(
            msg.contains(shown) && msg.contains("pre-release") && msg.contains("final release"),
            "{msg}"
        );
    }
}

#[test]
fn newer_minors_are_refused_clearly() {
    let (mut spec, _) = scenario(Version::new(3, 15, 0));
    spec.hex_version = 0x0310_00f0;
    let image = build(&spec);
    let err = debug_offsets::read(&image.memory, image.runtime).expect_err("3.16");
    assert!(
        matches!(&err, CpythonError::UnsupportedVersion { version, .. } if version == "3.16.0"),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer pyrometer"), "{err}");
}

#[test]
fn offsets_outside_their_struct_are_refused() {
    // `None`: 4 bytes before the end of the field's struct.
    let cases: &[(&str, Option<u64>, &str)] = &[
        ("thread_state.next", Some(4096), "outside its struct"),
        ("interpreter_frame.owner", Some(88), "outside its struct"),
        ("code_object.qualname", Some(100_000), "outside its struct"),
        // A pointer that would straddle the end of its struct.
        ("interpreter_frame.previous", None, "8-byte"),
        // A misaligned pointer.
        ("thread_state.current_frame", Some(73), "8-byte"),
        ("code_object.size", Some(1 << 30), "implausible"),
        ("thread_state.size", Some(0), "implausible"),
        ("unicode_object.asciiobject_size", Some(4), "implausible"),
    ];
    for minor in [13u8, 14, 15] {
        for (field, value, why) in cases {
            // Lay the image out with the real table, then write the bad one
            // over it: the builder needs sane values to place things.
            let (sane, _) = scenario(Version::new(3, minor, 0));
            let image = build(&sane);
            let mut spec = sane.clone();
            let section = field.split('.').next().unwrap_or("");
            let value =
                &value.unwrap_or_else(|| sane.offsets[format!("{section}.size").as_str()] - 4);
            spec.offsets.insert(field, *value);
            let table = debug_offsets::encode_hex(spec.hex_version, false, &spec.offsets);
            let mut memory = image.memory.clone();
            memory.write(image.runtime, &table);
            let err = debug_offsets::read(&memory, image.runtime).expect_err(field);
            let msg = err.to_string();
            assert!(
                matches!(err, CpythonError::BadDebugOffsets(_))
                    && msg.contains(field)
                    && msg.contains(why),
                "3.{minor} {field} = {value}: {msg}"
            );
        }
    }
}

#[test]
fn a_table_of_another_minor_than_the_binary_is_refused() {
    let (spec, _) = scenario(Version::new(3, 14, 0));
    let image = build(&spec);
    let debug = debug_offsets::read(&image.memory, image.runtime)
        .expect("valid")
        .expect("cookie");
    let err = layout_for(Version::new(3, 13, 0), Some(&debug)).expect_err("mismatch");
    assert!(matches!(err, CpythonError::BadDebugOffsets(_)), "{err:?}");
}

#[test]
fn images_without_the_cookie_have_no_table() {
    let (spec, _) = scenario(Version::new(3, 14, 0));
    let image = build(&spec);
    let mut memory = image.memory.clone();
    memory.write(image.runtime, b"notdebug");
    assert!(debug_offsets::read(&memory, image.runtime)
        .expect("no error")
        .is_none());
    // An unmapped runtime address is "no table" too, not a crash.
    assert!(debug_offsets::read(&memory, 0x10)
        .expect("no error")
        .is_none());
}

// ---------------------------------------------------------------------------
// Corrupt frame chains: bounded work, never a hang.

fn patch_previous(image: &mut Image, frame: u64, previous: u64, minor: u8) {
    let off = scenario(Version::new(3, minor, 0)).0.offsets["interpreter_frame.previous"];
    image.memory.write(frame + off, &previous.to_le_bytes());
}

#[test]
fn a_cycle_of_python_frames_is_bounded() {
    for minor in [13u8, 14, 15] {
        let (spec, _) = scenario(Version::new(3, minor, 0));
        let mut image = build(&spec);
        // The main thread's outermost Python frame points back at its top.
        let main = image.frames[1].clone();
        patch_previous(&mut image, main[2], main[0], minor);
        let t0 = Instant::now();
        let result = read_all(&image, Some(image.code_type));
        assert!(t0.elapsed() < Duration::from_secs(5), "3.{minor}: too slow");
        match result {
            Err(CpythonError::Corrupt(_)) => {}
            // Today's walker reports a Python-frame cycle as a stack cut at
            // the depth cap; never as a complete one.
            Ok(threads) => assert!(threads[1].truncated, "3.{minor}: a cycle read as complete"),
            Err(e) => panic!("3.{minor}: unexpected error {e:?}"),
        }
    }
}

/// The stricter behavior: a cycle is corruption, not a deep stack.
#[test]
fn a_cycle_of_python_frames_is_an_error() {
    for minor in [13u8, 14, 15] {
        let (spec, _) = scenario(Version::new(3, minor, 0));
        let mut image = build(&spec);
        let main = image.frames[1].clone();
        patch_previous(&mut image, main[2], main[0], minor);
        let result = read_all(&image, Some(image.code_type));
        assert!(
            matches!(result, Err(CpythonError::Corrupt(_))),
            "3.{minor}: {result:?}"
        );
    }
}

#[test]
fn a_cycle_of_interpreter_frames_is_an_error() {
    for minor in [13u8, 14, 15] {
        let (spec, _) = scenario(Version::new(3, minor, 0));
        let mut image = build(&spec);
        // main: [worker, entry, module, entry]: the entry frames point at
        // each other, and the walk never sees a Python frame again.
        let main = image.frames[1].clone();
        patch_previous(&mut image, main[1], main[3], minor);
        patch_previous(&mut image, main[3], main[1], minor);
        let t0 = Instant::now();
        let result = read_all(&image, Some(image.code_type));
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(result, Err(CpythonError::Corrupt(_))),
            "3.{minor}: {result:?}"
        );
    }
}

#[test]
fn a_cycle_of_thread_states_is_an_error() {
    let (spec, _) = scenario(Version::new(3, 15, 0));
    let mut image = build(&spec);
    let next = spec.offsets["thread_state.next"];
    let (a, b) = (image.tstates[0], image.tstates[1]);
    image.memory.write(b + next, &a.to_le_bytes());
    let t0 = Instant::now();
    let result = read_all(&image, Some(image.code_type));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(result, Err(CpythonError::Corrupt(_))),
        "{result:?}"
    );
}

/// `previous` and `f_executable` pointers to unmapped, misaligned or
/// absurd addresses. (An `f_executable` pointing at readable memory that is
/// not a code object just makes the frame skipped, as for C frames.)
fn wild_pointers(wild: &[u64]) {
    for minor in [13u8, 14, 15] {
        let (spec, _) = scenario(Version::new(3, minor, 0));
        let exe_off = spec.offsets["interpreter_frame.executable"];
        for &w in wild {
            // As a frame's `previous`.
            let mut image = build(&spec);
            let main = image.frames[1].clone();
            patch_previous(&mut image, main[0], w, minor);
            let result = read_all(&image, Some(image.code_type));
            assert!(result.is_err(), "3.{minor} previous {w:#x}: {result:?}");
            // As a frame's code object, when not readable.
            let mut image = build(&spec);
            if w & !7 == image.runtime {
                continue;
            }
            let main = image.frames[1].clone();
            image
                .memory
                .write(main[0] + exe_off, &(w & !7).to_le_bytes());
            let result = read_all(&image, Some(image.code_type));
            assert!(result.is_err(), "3.{minor} f_executable {w:#x}: {result:?}");
        }
    }
}

#[test]
fn wild_frame_pointers_fail_without_panicking() {
    wild_pointers(&[0x10, 0xdead_beef_0000, 0x7f3a_1000_0003]);
}

#[test]
fn frame_pointers_beyond_user_space_fail_without_panicking() {
    wild_pointers(&[u64::MAX - 7, 1 << 60]);
}

// ---------------------------------------------------------------------------
// 3.15 `base_frame`.

/// 3.15's `PyThreadState.base_frame` points at the sentinel frame at the
/// bottom of every thread's chain (owned by the interpreter). A walk from
/// `current_frame` that ends (`previous == NULL`) anywhere else read a
/// stack that was changing under it: CPython's own remote unwinder
/// (`Modules/_remote_debugging/frames.c`, `process_frame_chain`) rejects
/// such a sample as incomplete. The reader must do the same.
#[test]
fn cpython_3_15_a_chain_that_misses_the_base_frame_is_torn() {
    let version = Version::new(3, 15, 0);
    let (spec, _) = scenario(version);
    let mut image = build(&spec);
    // The main thread's outermost frame no longer leads to the base frame.
    let main = image.frames[1].clone();
    let last = *main.last().expect("frames");
    patch_previous(&mut image, last, 0, 15);
    let result = read_all(&image, Some(image.code_type));
    assert!(
        matches!(result, Err(CpythonError::Corrupt(_))),
        "a chain that does not end at base_frame must be refused: {result:?}"
    );
}

#[test]
fn cpython_3_15_chains_end_at_the_base_frame_which_is_not_shown() {
    let version = Version::new(3, 15, 0);
    let (spec, expected) = scenario(version);
    let image = build(&spec);
    let base_off = spec.offsets["thread_state.base_frame"];
    let prev_off = spec.offsets["interpreter_frame.previous"];
    for (i, ts) in image.tstates.iter().enumerate() {
        let base = image.base_frames[i].expect("3.15 has base frames");
        let mut b = [0u8; 8];
        pyrometer_process::Memory::read(&image.memory, ts + base_off, &mut b).expect("readable");
        assert_eq!(u64::from_le_bytes(b), base);
        let last = *image.frames[i].last().expect("frames");
        pyrometer_process::Memory::read(&image.memory, last + prev_off, &mut b).expect("readable");
        assert_eq!(
            u64::from_le_bytes(b),
            base,
            "the chain ends at the base frame"
        );
    }
    let threads = read_all(&image, Some(image.code_type)).expect("walk");
    for (t, want) in threads.iter().zip(&expected) {
        assert_eq!(&frames_of(t), want);
    }
    // A thread running no Python code: current_frame is the base frame.
    let mut idle = spec.clone();
    idle.threads[0].frames.clear();
    let image = build(&idle);
    let threads = read_all(&image, Some(image.code_type)).expect("walk");
    assert!(threads[0].frames.is_empty());
}

/// `_Py_DebugOffsets` says nothing about obmalloc: a 3.14+ layout built
/// from it has no heap model, and the heap is reported unavailable rather
/// than read at 3.13's offsets. 3.13's own table keeps the checked one.
#[test]
fn newer_versions_say_the_pymalloc_heap_is_unavailable() {
    use pyrometer_cpython::layout::HeapModel;
    use pyrometer_cpython::{read_pymalloc, HeapError, HeapLocation};
    for (minor, known) in [(13, true), (14, false), (15, false)] {
        let (spec, _) = scenario(Version::new(3, minor, 0));
        let image = build(&spec);
        let interp = interpreter_of(&image, None).expect("interpreter");
        assert_eq!(
            !matches!(interp.layout.heap, HeapModel::Unknown),
            known,
            "3.{minor}: {:?}",
            interp.layout.heap
        );
        if !known {
            assert!(matches!(interp.heap, HeapLocation::Unavailable(_)));
            assert!(matches!(
                read_pymalloc(&image.memory, &interp.layout, &interp.heap),
                Err(HeapError::Unavailable(_))
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// One bad thread spoils only its own sample.

/// An image in which one range cannot be read (memory the target unmapped).
struct Holed<'a> {
    inner: &'a pyrometer_process::ImageMemory,
    hole: std::ops::Range<u64>,
}

impl pyrometer_process::Memory for Holed<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), pyrometer_process::MemoryError> {
        let end = addr.saturating_add(buf.len() as u64);
        if addr < self.hole.end && end > self.hole.start {
            return Err(pyrometer_process::MemoryError::Unmapped {
                addr,
                len: buf.len(),
            });
        }
        self.inner.read(addr, buf)
    }
}

/// The non-strict read (the sampler's): one entry per thread, in order,
/// each either torn or with its full stack; `walk` sees every thread.
fn read_filtered<M: pyrometer_process::Memory>(
    mem: M,
    interp: Interpreter,
) -> Result<(Vec<ThreadStack>, usize), CpythonError> {
    let mut reader = StackReader::new(mem, interp);
    let mut seen = 0;
    let threads = reader.read_all_filtered(|_| {
        seen += 1;
        true
    })?;
    Ok((threads, seen))
}

#[test]
fn an_unreadable_thread_header_drops_only_that_thread() {
    for minor in [13u8, 14, 15] {
        let version = Version::new(3, minor, 0);
        let (spec, expected) = scenario(version);
        let image = build(&spec);
        let interp = interpreter_of(&image, Some(image.code_type)).expect("layout");
        // The worker's `current_frame` cannot be read (on 3.11/3.12 it is
        // the `cframe` pointer that goes bad the same way).
        let at = image.tstates[0] + spec.offsets["thread_state.current_frame"];
        let holed = Holed {
            inner: &image.memory,
            hole: at..at + 8,
        };
        let (threads, seen) = read_filtered(&holed, interp.clone())
            .unwrap_or_else(|e| panic!("3.{minor}: one bad thread failed the read: {e}"));
        assert_eq!(seen, 2, "3.{minor}: walk must see every thread");
        assert_eq!(threads.len(), 2, "3.{minor}");
        assert!(threads[0].torn, "3.{minor}: the bad thread is not torn");
        assert!(threads[0].frames.is_empty());
        assert_eq!(threads[0].tstate, image.tstates[0]);
        assert!(!threads[1].torn, "3.{minor}: the good thread was dropped");
        assert_eq!(frames_of(&threads[1]), expected[1], "3.{minor}");
        // `read_all` (strict, for dump's first try) still fails as a whole.
        let mut strict = StackReader::new(&holed, interp);
        assert!(strict.read_all().is_err(), "3.{minor}");
    }
}

#[test]
fn a_frame_outside_the_threads_data_stack_is_torn() {
    for minor in [13u8, 14, 15] {
        let version = Version::new(3, minor, 0);
        let (spec, expected) = scenario(version);
        let mut image = build(&spec);
        let interp = interpreter_of(&image, Some(image.code_type)).expect("layout");
        assert_eq!(
            interp.layout.tstate_datastack.map(|d| d.chunk),
            Some(spec.offsets["thread_state.datastack_chunk"]),
            "3.{minor}: the data stack offset is the table's"
        );
        // A torn read: the worker's thread state now names the main
        // thread's innermost frame, a well-formed frame in another thread's
        // data stack.
        let at = image.tstates[0] + spec.offsets["thread_state.current_frame"];
        image.memory.write(at, &image.frames[1][0].to_le_bytes());
        let (threads, _) = read_filtered(&image.memory, interp.clone()).expect("read");
        assert!(
            threads[0].torn,
            "3.{minor}: a frame of another thread's data stack was accepted: {:?}",
            frames_of(&threads[0])
        );
        assert!(!threads[1].torn);
        assert_eq!(frames_of(&threads[1]), expected[1], "3.{minor}");
        // Without the check the walk would have "succeeded": the data stack
        // is what tells the frames apart (3.15's base-frame sentinel also
        // catches this one: the chain ends at another thread's base).
        if minor >= 15 {
            continue;
        }
        let mut unchecked = interp.clone();
        unchecked.layout.tstate_datastack = None;
        let (threads, _) = read_filtered(&image.memory, unchecked).expect("read");
        assert!(!threads[0].torn, "3.{minor}");
        assert_eq!(frames_of(&threads[0]), expected[1], "3.{minor}");
    }
}

/// On 3.11 and 3.12 the innermost frame pointer is on the C stack, another
/// page than the thread state's `datastack_top`: a snapshot copies them at
/// different instants, and a frame pushed in between lies above the `top`
/// read. That is the stack moving, not a frame of another thread: it must
/// not be dropped as torn (it was, for a third of churn.py's samples on
/// 3.12). Shown here on 3.13's layout with `top` set below the innermost
/// frame.
#[test]
fn a_frame_above_the_data_stack_top_read_is_accepted() {
    use pyrometer_process::Memory as _;
    for minor in [13u8, 14, 15] {
        let version = Version::new(3, minor, 0);
        let (spec, expected) = scenario(version);
        let mut image = build(&spec);
        let interp = interpreter_of(&image, Some(image.code_type)).expect("layout");
        let ds = interp.layout.tstate_datastack.expect("a data stack");
        let Some(top) = ds.top else { continue };
        let ts = image.tstates[1];
        let innermost = image.frames[1][0];
        let chunk = image
            .memory
            .read_u64(ts + spec.offsets["thread_state.datastack_chunk"])
            .expect("chunk");
        assert!(innermost > chunk, "3.{minor}: the frame is in the chunk");
        image.memory.write(ts + top, &innermost.to_le_bytes());
        let (threads, _) = read_filtered(&image.memory, interp.clone()).expect("read");
        assert!(
            !threads[1].torn,
            "3.{minor}: a frame just pushed above the top read was dropped"
        );
        assert_eq!(frames_of(&threads[1]), expected[1], "3.{minor}");
    }
}

#[test]
fn frames_in_an_older_data_stack_chunk_are_accepted() {
    use pyrometer_cpython::layout::STACK_CHUNK;
    use pyrometer_process::Memory as _;
    for minor in [13u8, 14, 15] {
        let version = Version::new(3, minor, 0);
        let (spec, expected) = scenario(version);
        let mut image = build(&spec);
        let interp = interpreter_of(&image, Some(image.code_type)).expect("layout");
        // The main thread's frames are in chunk A. Make a new, empty chunk B
        // the newest, with A as its previous: the walk must follow it.
        let chunk_off = spec.offsets["thread_state.datastack_chunk"];
        let ts = image.tstates[1];
        let a = image.memory.read_u64(ts + chunk_off).expect("chunk");
        let b = 0x7f3a_5000_0000u64;
        let mut header = vec![0u8; 64];
        header[..8].copy_from_slice(&a.to_le_bytes());
        header[8..16].copy_from_slice(&64u64.to_le_bytes());
        image.memory.insert(b, header);
        image.memory.write(ts + chunk_off, &b.to_le_bytes());
        // Where the layout reads them (3.13), the top and limit are B's.
        let ds = interp.layout.tstate_datastack.expect("a data stack");
        if let Some(top) = ds.top {
            image.memory.write(ts + top, &(b + 24).to_le_bytes());
        }
        if let Some(limit) = ds.limit {
            image.memory.write(ts + limit, &(b + 64).to_le_bytes());
        }
        assert_eq!(STACK_CHUNK.chunk_previous, 0);
        let (threads, _) = read_filtered(&image.memory, interp.clone()).expect("read");
        assert!(
            !threads[1].torn,
            "3.{minor}: a frame in an older chunk was refused"
        );
        assert_eq!(frames_of(&threads[1]), expected[1], "3.{minor}");
        // A chunk list that loops is bounded, and refused when the frame is
        // in none of them.
        image.memory.write(b, &b.to_le_bytes());
        let (threads, _) = read_filtered(&image.memory, interp).expect("read");
        assert!(threads[1].torn, "3.{minor}");
    }
}

// ---------------------------------------------------------------------------
// The code-object cache stays bounded however many code objects there are.

#[test]
fn the_code_cache_is_bounded_by_entries_and_bytes() {
    let version = Version::new(3, 13, 0);
    let (mut spec, _) = scenario(version);
    let base = spec.codes.len();
    // Thousands of distinct code objects (a process that keeps compiling
    // code: templates, exec, eval), some with many long local names.
    for i in 0..3000 {
        let mut c = CodeSpec::new(
            &format!("generated_{i}"),
            &format!("<template {i}>"),
            1,
            &[(4, 0), (4, 1)],
        );
        if i % 3 == 0 {
            c.varnames = (0..40)
                .map(|v| format!("local_{v}_{}", "x".repeat(60)))
                .collect();
        }
        spec.codes.push(c);
    }
    let image = build(&spec);
    let interp = interpreter_of(&image, Some(image.code_type)).expect("layout");
    let hot = image.codes[WORKER];
    for (entries, bytes) in [(200usize, 1usize << 30), (1_000_000, 256 << 10)] {
        let mut reader = StackReader::new(&image.memory, interp.clone());
        reader.set_code_cache_limits(entries, bytes);
        let mut peak = (0, 0);
        for (i, &addr) in image.codes.iter().enumerate().skip(base) {
            let code = reader.code(addr).expect("code object");
            assert_eq!(code.name.as_ref(), format!("generated_{}", i - base));
            // One code object in use all along (a busy loop) reads right.
            let h = reader.code(hot).expect("hot code");
            assert_eq!(h.qualname.as_ref(), "Worker.run");
            peak.0 = peak.0.max(reader.cached_codes());
            peak.1 = peak.1.max(reader.cached_code_bytes());
        }
        println!(
            "code cache limits ({entries} entries, {bytes} B): peak {} entries, {} B",
            peak.0, peak.1
        );
        assert!(peak.0 <= 2 * entries, "{} entries cached", peak.0);
        assert!(peak.1 <= 2 * bytes, "{} bytes cached", peak.1);
        assert!(peak.0 > 0 && peak.1 > 0);
    }
}

// ---------------------------------------------------------------------------
// A caller must be stopped on a call instruction (3.13, 3.14; 3.15's opcode
// numbers are not confirmed, so its callers are not checked).

/// The return-offset field and the call opcodes of `interp`'s version.
fn call_fields(interp: &Interpreter) -> Option<(u64, u8, Option<u8>)> {
    match interp.layout.frame {
        FrameModel::Interpreter {
            calls: Some(calls),
            return_offset: Some(off),
            ..
        } => Some((off, calls.call, calls.init_check)),
        _ => None,
    }
}

#[test]
fn a_caller_off_its_call_instruction_is_torn() {
    use pyrometer_process::Memory as _;
    for minor in [13u8, 14, 15] {
        let version = Version::new(3, minor, 0);
        let (generator_spec, expected) = scenario(version);
        // The worker thread: gen_items ← Handler (pushed it inline) ← …,
        // gen_items a plain function's frame here (a generator's frame may
        // also be linked from C, by `throw()`: see below).
        let mut spec = generator_spec.clone();
        if let FrameSpec::Python { owner, .. } = &mut spec.threads[0].frames[0] {
            *owner = OWNED_BY_THREAD;
        }
        let ip_off = spec.offsets["interpreter_frame.instr_ptr"];
        let adaptive = spec.offsets["code_object.co_code_adaptive"];
        let handler_frame = |image: &Image| image.frames[0][1];
        let fresh = || {
            let image = build(&spec);
            let interp = interpreter_of(&image, Some(image.code_type)).expect("layout");
            (image, interp)
        };
        let (image, interp) = fresh();
        let (threads, _) = read_filtered(&image.memory, interp.clone()).expect("read");
        assert!(
            !threads[0].torn,
            "3.{minor}: the caller on its CALL was refused"
        );
        assert_eq!(frames_of(&threads[0]), expected[0], "3.{minor}");
        let checked = call_fields(&interp);
        assert_eq!(
            checked.is_some(),
            minor < 15,
            "3.{minor}: which versions check"
        );

        // Handler moved to its first instruction (not a call).
        let (mut image, interp) = fresh();
        let frame = handler_frame(&image);
        let start = image.codes[HANDLER] + adaptive;
        image.memory.write(frame + ip_off, &start.to_le_bytes());
        let (threads, _) = read_filtered(&image.memory, interp.clone()).expect("read");
        assert_eq!(
            threads[0].torn,
            checked.is_some(),
            "3.{minor}: caller off its call"
        );
        assert!(!threads[1].torn, "3.{minor}: the other thread is untouched");
        if checked.is_some() {
            // Refused for that reason, not another.
            let strict = StackReader::new(&image.memory, interp.clone()).read_all();
            assert!(
                matches!(&strict, Err(CpythonError::Corrupt(why)) if why.contains("not stopped on a call")),
                "3.{minor}: {strict:?}"
            );
        }
        // Under a generator's frame that is not running (`gen.throw()` links
        // a delegating generator to the thread's frame from C), the caller
        // is not checked.
        let mut image = build(&generator_spec);
        let interp_g = interpreter_of(&image, Some(image.code_type)).expect("layout");
        let frame = image.frames[0][1];
        let start_g = image.codes[HANDLER] + adaptive;
        image.memory.write(frame + ip_off, &start_g.to_le_bytes());
        let (threads, _) = read_filtered(&image.memory, interp_g).expect("read");
        assert!(
            !threads[0].torn,
            "3.{minor}: a suspended generator's caller was checked"
        );

        // Before its first instruction (a frame not started yet).
        let (mut image, interp) = fresh();
        let frame = handler_frame(&image);
        image
            .memory
            .write(frame + ip_off, &(start - 2).to_le_bytes());
        let (threads, _) = read_filtered(&image.memory, interp.clone()).expect("read");
        assert_eq!(
            threads[0].torn,
            checked.is_some(),
            "3.{minor}: caller not started"
        );

        let Some((return_offset, _, _)) = checked else {
            continue;
        };
        // On its CALL, but with the return offset of a frame that has not
        // called yet.
        let (mut image, interp) = fresh();
        let frame = handler_frame(&image);
        let mut set = [0u8; 2];
        image
            .memory
            .read(frame + return_offset, &mut set)
            .expect("readable");
        assert_eq!(
            u16::from_le_bytes(set),
            4,
            "3.{minor}: the builder's CALL set 4"
        );
        image.memory.write(frame + return_offset, &[0, 0]);
        let (threads, _) = read_filtered(&image.memory, interp).expect("read");
        assert!(threads[0].torn, "3.{minor}: caller with return offset 0");
    }
}

/// `CALL_ALLOC_AND_ENTER_INIT` pushes `__init__` over a shim frame running
/// `_Py_InitCleanup` (stopped on `EXIT_INIT_CHECK`, return offset 0): the
/// shim is accepted as a caller and not shown.
#[test]
fn the_init_shim_is_a_caller_but_not_a_frame() {
    for minor in [13u8, 14] {
        let version = Version::new(3, minor, 0);
        let mut spec = ImageSpec::new(version);
        spec.codes = vec![
            CodeSpec::new("Thing.__init__", "/srv/app/thing.py", 10, &[(8, 0)]),
            CodeSpec::new("__init__", "__init__", 0, &[(3, 0)]),
            CodeSpec::new("make", "/srv/app/thing.py", 20, &[(8, 0)]),
        ];
        spec.threads = vec![ThreadSpec {
            thread_id: MAIN_TID,
            native_id: MAIN_NATIVE,
            frames: vec![
                FrameSpec::py(0, 2),
                FrameSpec::py(1, 0),
                FrameSpec::py(2, 3),
                FrameSpec::Shim {
                    owner: OWNED_BY_INTERPRETER_OR_CSTACK,
                    code: None,
                },
            ],
        }];
        spec.gil_holder = Some(0);
        let mut image = build(&spec);
        let interp = interpreter_of(&image, Some(image.code_type)).expect("layout");
        let (return_offset, _, init_check) = call_fields(&interp).expect("3.13+ checks callers");
        let init_check = init_check.expect("an EXIT_INIT_CHECK opcode");
        // The shim's code starts with EXIT_INIT_CHECK; it set no return offset.
        let adaptive = spec.offsets["code_object.co_code_adaptive"];
        image
            .memory
            .write(image.codes[1] + adaptive, &[init_check, 0]);
        let shim = image.frames[0][1];
        image.memory.write(shim + return_offset, &[0, 0]);
        let (threads, _) = read_filtered(&image.memory, interp.clone()).expect("read");
        assert!(
            !threads[0].torn,
            "3.{minor}: the init shim was refused as a caller"
        );
        let names: Vec<String> = frames_of(&threads[0]).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["Thing.__init__", "make"], "3.{minor}");
        // The real caller behind the shim is still checked.
        let caller = image.frames[0][2];
        image.memory.write(caller + return_offset, &[0, 0]);
        let (threads, _) = read_filtered(&image.memory, interp).expect("read");
        assert!(
            threads[0].torn,
            "3.{minor}: the caller behind the shim went unchecked"
        );
    }
}
