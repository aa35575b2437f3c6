"""Print, for one CPython version, the inline cache entries that follow each
opcode in `co_code_adaptive`, as the Rust groups of
crates/cpython/src/layout/calls.rs (`CACHES_3xx`).

    python3.X tools/opcodes/cache_table.py            # that interpreter's own tables
    python3 tools/opcodes/cache_table.py DIR          # DIR holds a version's
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


def lengths(opmap, deopt, caches):
    """opcode number -> inline caches, for every opcode with a known length."""
    out = {}
    for name, num in opmap.items():
        if name in ("INSTRUMENTED_LINE", "INSTRUMENTED_INSTRUCTION"):
            continue
        base = deopt.get(name, name)
        if base.startswith("INSTRUMENTED_") and base[len("INSTRUMENTED_"):] in opmap:
            base = base[len("INSTRUMENTED_"):]
        if name == "ENTER_EXECUTOR":
            base = "JUMP_BACKWARD"
        out[num] = caches.get(base, 0)
    return out


def main():
    tables = tables_from_dir(sys.argv[1]) if len(sys.argv) > 1 else tables_from_interpreter()
    by_caches = {}
    for num, c in sorted(lengths(*tables).items()):
        if c:
            by_caches.setdefault(c, []).append(num)
    for c, nums in sorted(by_caches.items()):
        print(f"    ({c}, &[{', '.join(map(str, nums))}]),")


if __name__ == "__main__":
    main()
