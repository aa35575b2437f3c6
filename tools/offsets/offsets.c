/*
 * Print the CPython struct offsets that pyrometer's static `Layout` tables
 * (crates/cpython/src/layout/tables.rs) hard-code, as `name=value` lines,
 * computed by the compiler from the interpreter's own (internal) headers.
 *
 * Names are the `Layout` field names; fields inside enums are written
 * `enum_field.variant_field` (e.g. `frame.previous`, `long_model.lv_tag`).
 * Lines starting with `info.` are facts for humans (checked loosely by the
 * test, or just printed): they describe model semantics, not Layout fields.
 *
 * Build: see print-offsets.sh (needs -DPy_BUILD_CORE and -I .../internal).
 */
#include <Python.h>
#include <stddef.h>
#include <stdio.h>

#if PY_VERSION_HEX < 0x03080000 || PY_VERSION_HEX >= 0x030E0000
#error "offsets.c covers CPython 3.8 to 3.13"
#endif

#if PY_VERSION_HEX < 0x03090000
/* 3.8: PyFrameObject is in the public frameobject.h, which Python.h does
 * not include; runtime and interpreter state live in pycore_pystate.h. */
#include <frameobject.h>
#include <internal/pycore_pystate.h>
#elif PY_VERSION_HEX < 0x030B0000
/* 3.9/3.10: runtime and interpreter state split into their own headers. */
#include <frameobject.h>
#include "pycore_runtime.h"
#include "pycore_interp.h"
#else
/* 3.11+: frames, dict keys and the interpreter are all internal. */
#include "pycore_runtime.h"
#include "pycore_interp.h"
#include "pycore_frame.h"
#include "pycore_dict.h"
#include "pycore_object.h"
#endif

#if PY_VERSION_HEX < 0x030B0000
/* Before 3.11 PyDictKeysObject is private to Objects/dict-common.h, which is
 * not installed. This copy is identical in 3.6-3.10 (dk_refcnt, dk_size,
 * dk_lookup, dk_usable, dk_nentries, dk_indices); the integration test also
 * checks dk_size/dk_nentries against a live dict for these versions. */
typedef Py_ssize_t (*pyrometer_dict_lookup_func)(PyDictObject *mp, PyObject *key,
                                                 Py_hash_t hash, PyObject **value_addr);
struct pyrometer_dictkeys {
    Py_ssize_t dk_refcnt;
    Py_ssize_t dk_size;
    pyrometer_dict_lookup_func dk_lookup;
    Py_ssize_t dk_usable;
    Py_ssize_t dk_nentries;
    char dk_indices[];
};
#endif

#define P(name, value) printf("%s=%lld\n", name, (long long)(value))
#define OFF(name, type, member) P(name, offsetof(type, member))

int main(void) {
    P("info.py_version_hex", PY_VERSION_HEX);
#ifdef Py_GIL_DISABLED
    P("free_threaded", 1);
#else
    P("free_threaded", 0);
#endif
#ifdef Py_DEBUG
    P("info.py_debug", 1);
#else
    P("info.py_debug", 0);
#endif

    /* _PyRuntimeState */
    OFF("runtime_interpreters_head", _PyRuntimeState, interpreters.head);
#if PY_VERSION_HEX < 0x030C0000
    OFF("runtime_gil", _PyRuntimeState, ceval.gil);
#endif

    /* PyInterpreterState */
    OFF("interp_next", PyInterpreterState, next);
#if PY_VERSION_HEX < 0x030B0000
    OFF("interp_threads_head", PyInterpreterState, tstate_head);
#else
    OFF("interp_threads_head", PyInterpreterState, threads.head);
#endif
#if PY_VERSION_HEX < 0x030C0000
    OFF("interp_modules", PyInterpreterState, modules);
#else
    OFF("interp_modules", PyInterpreterState, imports.modules);
#endif
#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
    OFF("interp_gil_ptr", PyInterpreterState, ceval.gil);
#endif
#if PY_VERSION_HEX >= 0x030D0000
    OFF("interp_gil_inline", PyInterpreterState, _gil);
    /* Not a Layout field: 3.13 still has the ceval.gil pointer too. */
    OFF("info.interp_ceval_gil_ptr", PyInterpreterState, ceval.gil);
#endif

    /* struct _gil_runtime_state */
    OFF("gil_last_holder", struct _gil_runtime_state, last_holder);
    OFF("gil_locked", struct _gil_runtime_state, locked);

    /* PyThreadState */
    OFF("tstate_next", PyThreadState, next);
    OFF("tstate_interp", PyThreadState, interp);
    OFF("tstate_thread_id", PyThreadState, thread_id);
#if PY_VERSION_HEX >= 0x030B0000
    OFF("tstate_native_thread_id", PyThreadState, native_thread_id);
#endif
#if PY_VERSION_HEX >= 0x030B0000
    OFF("tstate_datastack.chunk", PyThreadState, datastack_chunk);
    OFF("tstate_datastack.top", PyThreadState, datastack_top);
    OFF("tstate_datastack.limit", PyThreadState, datastack_limit);
    OFF("tstate_datastack.chunk_previous", _PyStackChunk, previous);
    OFF("tstate_datastack.chunk_size", _PyStackChunk, size);
    OFF("tstate_datastack.chunk_data", _PyStackChunk, data);
#endif
#if PY_VERSION_HEX < 0x030B0000
    OFF("frame_root.frame", PyThreadState, frame);
#elif PY_VERSION_HEX < 0x030D0000
    OFF("frame_root.cframe", PyThreadState, cframe);
    OFF("frame_root.current_frame", _PyCFrame, current_frame);
#else
    OFF("frame_root.current_frame", PyThreadState, current_frame);
#endif

    /* Frames */
#if PY_VERSION_HEX < 0x030B0000
    OFF("frame.back", PyFrameObject, f_back);
    OFF("frame.code", PyFrameObject, f_code);
    OFF("frame.lasti", PyFrameObject, f_lasti);
    OFF("frame.lineno", PyFrameObject, f_lineno);
    OFF("frame.localsplus", PyFrameObject, f_localsplus);
    P("info.sizeof_f_lasti", sizeof(((PyFrameObject *)0)->f_lasti));
#else
    OFF("frame.previous", _PyInterpreterFrame, previous);
#if PY_VERSION_HEX < 0x030D0000
    OFF("frame.executable", _PyInterpreterFrame, f_code);
    OFF("frame.instr_ptr", _PyInterpreterFrame, prev_instr);
#else
    OFF("frame.executable", _PyInterpreterFrame, f_executable);
    OFF("frame.instr_ptr", _PyInterpreterFrame, instr_ptr);
#endif
    OFF("frame.localsplus", _PyInterpreterFrame, localsplus);
    OFF("frame.owner", _PyInterpreterFrame, owner);
    P("info.sizeof_owner", sizeof(((_PyInterpreterFrame *)0)->owner));
#if PY_VERSION_HEX >= 0x030C0000
    P("info.frame_owned_by_cstack", FRAME_OWNED_BY_CSTACK);
    OFF("frame.return_offset", _PyInterpreterFrame, return_offset);
    P("info.sizeof_return_offset", sizeof(((_PyInterpreterFrame *)0)->return_offset));
#else
    OFF("frame.entry_flag", _PyInterpreterFrame, is_entry);
#endif
#endif

    /* PyCodeObject */
    OFF("code_filename", PyCodeObject, co_filename);
    OFF("code_name", PyCodeObject, co_name);
#if PY_VERSION_HEX >= 0x030B0000
    OFF("code_qualname", PyCodeObject, co_qualname);
#endif
#if PY_VERSION_HEX < 0x030A0000
    OFF("code_linetable", PyCodeObject, co_lnotab);
#else
    OFF("code_linetable", PyCodeObject, co_linetable);
#endif
    OFF("code_firstlineno", PyCodeObject, co_firstlineno);
    OFF("code_argcount", PyCodeObject, co_argcount);
    OFF("code_flags", PyCodeObject, co_flags);
#if PY_VERSION_HEX < 0x030B0000
    OFF("code_varnames", PyCodeObject, co_varnames);
    OFF("code_nlocals", PyCodeObject, co_nlocals);
    OFF("code_cellvars", PyCodeObject, co_cellvars);
    OFF("code_freevars", PyCodeObject, co_freevars);
#else
    OFF("code_varnames", PyCodeObject, co_localsplusnames);
    OFF("code_localspluskinds", PyCodeObject, co_localspluskinds);
    OFF("code_code_adaptive", PyCodeObject, co_code_adaptive);
    P("info.code_ob_size", offsetof(PyVarObject, ob_size));
#endif

    /* PyObject / PyTypeObject / PyHeapTypeObject */
    OFF("ob_type", PyObject, ob_type);
    OFF("type_tp_name", PyTypeObject, tp_name);
    OFF("type_tp_flags", PyTypeObject, tp_flags);
    OFF("type_tp_basicsize", PyTypeObject, tp_basicsize);
    OFF("type_tp_dictoffset", PyTypeObject, tp_dictoffset);
    OFF("type_tp_members", PyTypeObject, tp_members);
    OFF("type_tp_base", PyTypeObject, tp_base);
    OFF("heap_type_cached_keys", PyHeapTypeObject, ht_cached_keys);

    /* Strings: length/state sit in the PyASCIIObject prefix of all of them. */
    OFF("unicode_length", PyASCIIObject, length);
    OFF("unicode_state", PyASCIIObject, state);
    P("unicode_ascii_data", sizeof(PyASCIIObject));
    P("unicode_compact_data", sizeof(PyCompactUnicodeObject));

    /* bytes, int, float, tuple, list */
    OFF("bytes_size", PyBytesObject, ob_base.ob_size);
    OFF("bytes_sval", PyBytesObject, ob_sval);
#if PY_VERSION_HEX < 0x030C0000
    OFF("long_model.ob_size", PyLongObject, ob_base.ob_size);
    OFF("long_digit", PyLongObject, ob_digit);
#else
    OFF("long_model.lv_tag", PyLongObject, long_value.lv_tag);
    OFF("long_digit", PyLongObject, long_value.ob_digit);
#endif
    OFF("float_fval", PyFloatObject, ob_fval);
    OFF("tuple_size", PyTupleObject, ob_base.ob_size);
    OFF("tuple_item", PyTupleObject, ob_item);
    OFF("list_size", PyListObject, ob_base.ob_size);
    OFF("list_item", PyListObject, ob_item);

    /* dict */
    OFF("dict_used", PyDictObject, ma_used);
    OFF("dict_keys", PyDictObject, ma_keys);
    OFF("dict_values", PyDictObject, ma_values);
#if PY_VERSION_HEX < 0x030B0000
    OFF("dict_keys_model.dk_size", struct pyrometer_dictkeys, dk_size);
    OFF("dict_keys_model.dk_nentries", struct pyrometer_dictkeys, dk_nentries);
    OFF("dict_keys_model.dk_indices", struct pyrometer_dictkeys, dk_indices);
#else
    OFF("dict_keys_model.dk_log2_size", PyDictKeysObject, dk_log2_size);
    OFF("dict_keys_model.dk_log2_index_bytes", PyDictKeysObject, dk_log2_index_bytes);
    OFF("dict_keys_model.dk_kind", PyDictKeysObject, dk_kind);
    OFF("dict_keys_model.dk_nentries", PyDictKeysObject, dk_nentries);
    OFF("dict_keys_model.dk_indices", PyDictKeysObject, dk_indices);
    P("info.dk_kind_general", DICT_KEYS_GENERAL);
    P("info.dk_kind_unicode", DICT_KEYS_UNICODE);
    P("info.dk_kind_split", DICT_KEYS_SPLIT);
    OFF("info.dict_values_values", PyDictValues, values);
#endif

    /* Instance dict model: where the managed dict / values pointers sit,
     * computed by calling CPython's own inline accessors on a fake object. */
    {
        static char buf[512] __attribute__((aligned(16)));
        PyObject *obj = (PyObject *)(buf + 256);
        (void)obj;
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
        P("info.managed_dict_offset", (char *)_PyObject_ManagedDictPointer(obj) - (char *)obj);
        P("info.managed_values_offset", (char *)_PyObject_ValuesPointer(obj) - (char *)obj);
#elif PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
        P("info.managed_dict_offset", (char *)_PyObject_DictOrValuesPointer(obj) - (char *)obj);
        /* Tagged values pointers are stored as `values - 1`: untag by adding 1. */
        {
            PyDictOrValues dorv;
            _PyDictOrValues_SetValues(&dorv, (PyDictValues *)(buf + 64));
            P("info.dict_or_values_stored_minus_values", dorv.values - (buf + 64));
            P("info.dict_or_values_untag_add",
              (char *)_PyDictOrValues_GetValues(dorv) - dorv.values);
        }
#elif PY_VERSION_HEX >= 0x030D0000
        static PyTypeObject fake_type;
        fake_type.tp_basicsize = 16;
        obj->ob_type = &fake_type;
        P("info.managed_dict_offset", (char *)_PyObject_ManagedDictPointer(obj) - (char *)obj);
        /* Inline values start at tp_basicsize; the pointer array after the header. */
        P("info.inline_values_offset_minus_basicsize",
          (char *)_PyObject_InlineValues(obj) - (char *)obj - 16);
        P("info.inline_values_array_offset",
          (char *)_PyObject_InlineValues(obj)->values - (char *)_PyObject_InlineValues(obj));
#endif
    }

    /* pymalloc: where the main interpreter's arena count lives (3.12+; in
     * 3.8-3.11 it is a file-static variable found by its symbol, and
     * ARENA_SIZE is private to Objects/obmalloc.c). */
#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
    P("heap.narenas", offsetof(_PyRuntimeState, _main_interpreter) +
                          offsetof(PyInterpreterState, obmalloc.mgmt.narenas_currently_allocated));
#elif PY_VERSION_HEX >= 0x030D0000
    P("heap.obmalloc",
      offsetof(_PyRuntimeState, _main_interpreter) + offsetof(PyInterpreterState, obmalloc));
    OFF("heap.narenas", struct _obmalloc_state, mgmt.narenas_currently_allocated);
#endif
#if PY_VERSION_HEX >= 0x030C0000
    P("arena_size", ARENA_SIZE);
#endif
    return 0;
}
