"""Print, for one CPython version, the inline cache entries that follow each
opcode in `co_code_adaptive`, as the Rust groups of
crates/cpython/src/layout/calls.rs (`CACHES_3xx`); with --calls, the
opcodes of the instructions that push a Python frame inline (`PY3xx`), one
`OPCODE UNITS SETS_RETURN_OFFSET` line each (`OPCODE hidden` for the
instrumented ones that hide their instruction).

    python3.X tools/opcodes/cache_table.py [--calls]      # that interpreter's own tables
    python3 tools/opcodes/cache_table.py [--calls] DIR    # DIR holds a version's
                                                          # _opcode_metadata.py and opcode.py

A specialized opcode has its base's caches; an instrumented one
(INSTRUMENTED_X) keeps X's caches in place; ENTER_EXECUTOR sits where a
JUMP_BACKWARD was. INSTRUMENTED_LINE and INSTRUMENTED_INSTRUCTION hide the
instruction under them and have no known length (not listed).
"""
import ast
import sys


def tables_from_interpreter():
    import dis
    import opcode
    if hasattr(dis, "_all_opmap"):  # 3.11, 3.12
        opmap, deopt = dis._all_opmap, dis.deoptmap
    else:  # 3.13+
        import _opcode_metadata as meta
        opmap = dict(opcode.opmap)
        opmap.update(meta._specialized_opmap)
        deopt = {s: b for b, f in meta._specializations.items() for s in f}
    ce = opcode._inline_cache_entries
    if isinstance(ce, list):
        caches = {name: ce[num] for name, num in opmap.items() if num < len(ce)}
    else:
        caches = dict(ce)
    return opmap, deopt, caches


def tables_from_dir(d):
    meta = {}
    exec(open(f"{d}/_opcode_metadata.py").read(), meta)
    tree = ast.parse(open(f"{d}/opcode.py").read())
    fmt = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_cache_format":
            fmt = ast.literal_eval(node.value)
    opmap = dict(meta["opmap"])
    opmap.update(meta["_specialized_opmap"])
    deopt = {s: b for b, f in meta["_specializations"].items() for s in f}
    return opmap, deopt, {k: sum(v.values()) for k, v in fmt.items()}


# The base instructions that push a Python frame inline, per version (from
# Python/ceval.c in 3.11, Python/bytecodes.c from 3.12; see calls.rs).
CALL_FAMILIES = {
    (3, 11): ["CALL", "BINARY_SUBSCR"],
    (3, 12): ["CALL", "CALL_FUNCTION_EX", "BINARY_SUBSCR", "LOAD_ATTR", "FOR_ITER", "SEND"],
    (3, 13): ["CALL", "CALL_KW", "CALL_FUNCTION_EX", "BINARY_SUBSCR", "LOAD_ATTR", "FOR_ITER",
              "SEND", "EXIT_INIT_CHECK"],
}
HIDDEN = ("INSTRUMENTED_LINE", "INSTRUMENTED_INSTRUCTION")


def base_of(name, opmap, deopt):
    """The instruction `name` is a form of: its base if specialized, X for
    INSTRUMENTED_X, JUMP_BACKWARD for ENTER_EXECUTOR (which sits where one was)."""
    base = deopt.get(name, name)
    if base.startswith("INSTRUMENTED_") and base[len("INSTRUMENTED_"):] in opmap:
        base = base[len("INSTRUMENTED_"):]
    if name == "ENTER_EXECUTOR":
        base = "JUMP_BACKWARD"
    return base


def calls(opmap, deopt, caches, version):
    """opcode number -> (units, sets return offset) or "hidden"."""
    families = CALL_FAMILIES[version]
    out = {}
    for name, num in opmap.items():
        if name in HIDDEN:
            out[num] = "hidden"
            continue
        base = base_of(name, opmap, deopt)
        if base in families:
            out[num] = (1 + caches.get(base, 0), version >= (3, 13) and base != "EXIT_INIT_CHECK")
    return out


def lengths(opmap, deopt, caches):
    """opcode number -> inline caches, for every opcode with a known length."""
    out = {}
    for name, num in opmap.items():
        if name in HIDDEN:
            continue
        out[num] = caches.get(base_of(name, opmap, deopt), 0)
    return out


def main():
    args = sys.argv[1:]
    want_calls = "--calls" in args
    args = [a for a in args if a != "--calls"]
    tables = tables_from_dir(args[0]) if args else tables_from_interpreter()
    if want_calls:
        if args:
            sys.exit("--calls reads the running interpreter's tables only (give no DIR)")
        for num, what in sorted(calls(*tables, sys.version_info[:2]).items()):
            print(f"{num} hidden" if what == "hidden" else f"{num} {what[0]} {int(what[1])}")
        return
    by_caches = {}
    for num, c in sorted(lengths(*tables).items()):
        if c:
            by_caches.setdefault(c, []).append(num)
    for c, nums in sorted(by_caches.items()):
        print(f"    ({c}, &[{', '.join(map(str, nums))}]),")


if __name__ == "__main__":
    main()
