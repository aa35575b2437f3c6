//! Static layout tables for CPython 3.8–3.13 (x86-64, GIL builds, release).
//!
//! Every number here is an `offsetof`/`sizeof` printed by
//! `tools/offsets/offsets.c` against the installed interpreters' headers;
//! `tests/offsets_match_headers.rs` recompiles that program and compares.
//! The exceptions are `asyncio_task_coro` and `coro_frame`: asyncio's C task
//! is private to `_asynciomodule.c`, so they were measured in each live
//! interpreter (with `ctypes`) and `tests/threadpool_live.rs` checks them.
//! Offsets are stable across micro releases (checked: Debian 3.11.2 and
//! pyenv 3.11.7 agree on every field).
//!
//! Each minor version is written as the previous one plus its differences,
//! so a diff between two tables reads as "what changed in that release".

use super::{
    calls, CoroFrame, DataStack, DictKeysModel, FrameModel, FrameRoot, HeapModel,
    InstanceDictModel, Layout, LineTableFormat, LongModel, Version, STACK_CHUNK,
};

/// `FRAME_OWNED_BY_CSTACK` (3.12/3.13): the entry shim frame, not Python code.
const FRAME_OWNED_BY_CSTACK: u8 = 3;

const PY38: Layout = Layout {
    version: Version::new(3, 8, 0),
    free_threaded: false,
    interp_code_generation: None,
    tstate_base_frame: None,
    tstate_datastack: None,
    tstate_holds_gil: None,
    tstate_gil_requested: None,

    runtime_interpreters_head: 32,
    runtime_gil: Some(1152),

    interp_next: 0,
    interp_threads_head: 8,
    interp_modules: 56,
    interp_gil_ptr: None,
    interp_gil_inline: None,

    gil_last_holder: 8,
    gil_locked: 16,

    tstate_next: 8,
    tstate_interp: 16,
    tstate_thread_id: 176,
    tstate_native_thread_id: None,
    frame_root: FrameRoot::FrameObject { frame: 24 },

    frame: FrameModel::FrameObject {
        back: 24,
        code: 32,
        lasti: 104,
        lasti_unit: 1,
        lineno: 108,
        localsplus: 360,
    },

    code_filename: 104,
    code_name: 112,
    code_qualname: None,
    code_linetable: 120,
    code_firstlineno: 40,
    code_argcount: 16,
    code_flags: 36,
    code_varnames: 72,
    code_localspluskinds: None,
    code_nlocals: Some(28),
    code_cellvars: Some(88),
    code_freevars: Some(80),
    code_code_adaptive: None,
    line_table: LineTableFormat::Lnotab,

    ob_type: 8,
    type_tp_name: 24,
    type_tp_flags: 168,
    type_tp_basicsize: 32,
    type_tp_dictoffset: 288,
    type_tp_members: 240,
    type_tp_base: 256,
    heap_type_cached_keys: Some(872),

    unicode_length: 16,
    unicode_state: 32,
    unicode_ascii_data: 48,
    unicode_compact_data: 72,

    bytes_size: 16,
    bytes_sval: 32,
    long_model: LongModel::SignedSize { ob_size: 16 },
    long_digit: 24,
    float_fval: 16,
    tuple_size: 16,
    tuple_item: 24,
    list_size: 16,
    list_item: 24,

    dict_used: 16,
    dict_keys: 32,
    dict_values: 40,
    // Objects/dict-common.h (not installed): refcnt, size, lookup, usable, nentries.
    dict_keys_model: DictKeysModel::Sized {
        dk_size: 8,
        dk_nentries: 32,
        dk_indices: 40,
    },
    instance_dict: InstanceDictModel::DictOffset,
    heap: HeapModel::StaticSymbol,
    arena_size: 256 << 10,
    asyncio_task_coro: Some(112),
    coro_frame: CoroFrame::Pointer(16),
};

/// 3.9: runtime and interpreter state grew (per-interpreter ceval, gc, ...).
const PY39: Layout = Layout {
    version: Version::new(3, 9, 0),
    runtime_gil: Some(352),
    interp_modules: 856,
    heap_type_cached_keys: Some(864),
    // `fut_cancel_msg` and the cancelled-exception state joined the future.
    asyncio_task_coro: Some(152),
    ..PY38
};

/// 3.10: `f_lasti` counts code units, PEP 626 line table, smaller frame object.
const PY310: Layout = Layout {
    version: Version::new(3, 10, 0),
    frame: FrameModel::FrameObject {
        back: 24,
        code: 32,
        lasti: 96,
        lasti_unit: 2,
        lineno: 100,
        localsplus: 352,
    },
    line_table: LineTableFormat::Linetable310,
    heap_type_cached_keys: Some(872),
    // bpo-37448: the radix tree allows 1 MiB arenas on 64-bit builds.
    arena_size: 1 << 20,
    asyncio_task_coro: Some(160),
    ..PY39
};

/// 3.11: `_PyInterpreterFrame`s reached through `cframe`, new code object,
/// log2-sized dict keys, managed instance dicts.
const PY311: Layout = Layout {
    version: Version::new(3, 11, 0),
    runtime_interpreters_head: 40,
    runtime_gil: Some(360),

    interp_threads_head: 16,
    interp_modules: 888,

    tstate_thread_id: 152,
    tstate_native_thread_id: Some(160),
    tstate_datastack: Some(DataStack {
        chunk: 296,
        top: Some(304),
        limit: Some(312),
        ..STACK_CHUNK
    }),
    // `_PyCFrame` starts with `use_tracing`, hence current_frame at 8.
    frame_root: FrameRoot::CFrame {
        cframe: 56,
        current_frame: 8,
    },

    frame: FrameModel::Interpreter {
        previous: 48,
        executable: 32,
        instr_ptr: 56,
        instr_ptr_is_previous: true,
        localsplus: 72,
        owner: 69,
        skip_owners: &[],
        executable_tag_mask: 0,
        calls: Some(&calls::PY311),
        return_offset: None,
        entry_flag: Some(68),
    },

    code_filename: 112,
    code_name: 120,
    code_qualname: Some(128),
    code_linetable: 136,
    code_firstlineno: 72,
    code_argcount: 56,
    code_flags: 48,
    code_varnames: 96,
    code_localspluskinds: Some(104),
    code_nlocals: None,
    code_cellvars: None,
    code_freevars: None,
    code_code_adaptive: Some(184),
    line_table: LineTableFormat::Locations311,

    dict_keys_model: DictKeysModel::Log2 {
        dk_log2_size: 8,
        dk_log2_index_bytes: 9,
        dk_kind: 10,
        dk_nentries: 24,
        dk_indices: 32,
    },
    instance_dict: InstanceDictModel::Managed311,
    asyncio_task_coro: Some(136),
    coro_frame: CoroFrame::Inline(80),
    ..PY310
};

/// 3.12: per-interpreter GIL (behind a pointer), `_PyCFrame` without
/// `use_tracing`, reordered frame, tagged ints, no `wstr` in strings.
const PY312: Layout = Layout {
    version: Version::new(3, 12, 0),
    runtime_gil: None,

    interp_threads_head: 72,
    interp_modules: 944,
    interp_gil_ptr: Some(384),

    tstate_thread_id: 136,
    tstate_native_thread_id: Some(144),
    tstate_datastack: Some(DataStack {
        chunk: 232,
        top: Some(240),
        limit: Some(248),
        ..STACK_CHUNK
    }),
    frame_root: FrameRoot::CFrame {
        cframe: 56,
        current_frame: 0,
    },

    frame: FrameModel::Interpreter {
        previous: 8,
        executable: 0,
        instr_ptr: 56,
        instr_ptr_is_previous: true,
        localsplus: 72,
        owner: 70,
        skip_owners: &[FRAME_OWNED_BY_CSTACK],
        executable_tag_mask: 0,
        calls: Some(&calls::PY312),
        return_offset: Some(68),
        entry_flag: None,
    },

    code_firstlineno: 68,
    code_argcount: 52,
    code_code_adaptive: Some(192),

    heap_type_cached_keys: Some(880),
    unicode_ascii_data: 40,
    unicode_compact_data: 56,
    long_model: LongModel::Tagged { lv_tag: 16 },
    instance_dict: InstanceDictModel::DictOrValues312,
    heap: HeapModel::RuntimeInline { narenas: 81416 },
    coro_frame: CoroFrame::Inline(72),
    ..PY311
};

/// 3.13: `PyInterpreterState` now starts with the large `ceval` state (its
/// pending-calls array), so every interpreter offset moved; the GIL state is
/// inline; `tstate->current_frame` replaces `cframe`; `instr_ptr`.
const PY313: Layout = Layout {
    version: Version::new(3, 13, 0),
    runtime_interpreters_head: 632,

    interp_next: 7264,
    interp_threads_head: 7344,
    interp_modules: 7656,
    interp_gil_ptr: None,
    interp_gil_inline: Some(7752),

    tstate_thread_id: 152,
    tstate_native_thread_id: Some(160),
    frame_root: FrameRoot::Direct { current_frame: 72 },

    frame: FrameModel::Interpreter {
        previous: 8,
        executable: 0,
        instr_ptr: 56,
        instr_ptr_is_previous: false,
        localsplus: 72,
        owner: 70,
        skip_owners: &[FRAME_OWNED_BY_CSTACK],
        executable_tag_mask: 0,
        calls: Some(&calls::PY313),
        return_offset: Some(68),
        entry_flag: None,
    },

    code_code_adaptive: Some(200),
    instance_dict: InstanceDictModel::InlineValues313,
    heap: HeapModel::RuntimePointer {
        obmalloc: 99152,
        narenas: 1064,
    },
    asyncio_task_coro: Some(120),
    ..PY312
};

/// The static layout for `version`, if known (3.8–3.13; any micro, final
/// or release candidate). Alphas and betas get `None`: internal structs
/// still move during those, so a final release's table may not fit.
pub fn known_layout(version: Version) -> Option<Layout> {
    if version.major != 3 || !matches!(version.level, 0xC | 0xF) {
        return None;
    }
    let base = match version.minor {
        8 => PY38,
        9 => PY39,
        10 => PY310,
        11 => PY311,
        12 => PY312,
        13 => PY313,
        _ => return None,
    };
    Some(Layout { version, ..base })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_version_has_its_version_and_line_table() {
        let expected = [
            (8, LineTableFormat::Lnotab),
            (9, LineTableFormat::Lnotab),
            (10, LineTableFormat::Linetable310),
            (11, LineTableFormat::Locations311),
            (12, LineTableFormat::Locations311),
            (13, LineTableFormat::Locations311),
        ];
        for (minor, line_table) in expected {
            for micro in [0, 7, 18] {
                let version = Version::new(3, minor, micro);
                let layout = known_layout(version).expect("known version");
                assert_eq!(layout.version, version);
                assert_eq!(layout.line_table, line_table, "3.{minor}");
                assert!(!layout.free_threaded);
            }
        }
    }

    #[test]
    fn release_candidates_keep_their_level_and_early_pre_releases_are_refused() {
        let rc = Version::from_hex(0x030C_00C1);
        assert_eq!(known_layout(rc).map(|l| l.version), Some(rc));
        assert!(known_layout(Version::from_hex(0x030C_00B1)).is_none());
        assert!(known_layout(Version::from_hex(0x030D_00A4)).is_none());
    }

    #[test]
    fn unknown_versions_have_no_static_layout() {
        for (major, minor) in [(2, 7), (3, 7), (3, 14), (3, 15), (4, 0)] {
            assert!(known_layout(Version::new(major, minor, 0)).is_none());
        }
    }

    #[test]
    fn models_follow_the_version() {
        for minor in 8..=13 {
            let l = known_layout(Version::new(3, minor, 0)).expect("known version");
            assert_eq!(l.has_interpreter_frames(), minor >= 11, "3.{minor}");
            assert_eq!(
                matches!(l.long_model, LongModel::Tagged { .. }),
                minor >= 12
            );
            assert_eq!(
                matches!(l.dict_keys_model, DictKeysModel::Log2 { .. }),
                minor >= 11
            );
            assert_eq!(l.runtime_gil.is_some(), minor <= 11);
            assert_eq!(l.interp_gil_ptr.is_some(), minor == 12);
            assert_eq!(l.interp_gil_inline.is_some(), minor == 13);
            assert_eq!(l.tstate_native_thread_id.is_some(), minor >= 11);
            assert_eq!(l.tstate_datastack.is_some(), minor >= 11);
            assert_eq!(l.code_qualname.is_some(), minor >= 11);
            assert_eq!(l.code_code_adaptive.is_some(), minor >= 11);
            assert_eq!(l.code_nlocals.is_some(), minor <= 10);
        }
    }
}
