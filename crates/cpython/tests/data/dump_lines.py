"""Dump CPython's own offset -> line answers for many code objects.

Run under any CPython 3.8+; writes JSON lines to stdout:

* a header line:
  {"version": "3.11.7", "format": "Locations311", "source": "PyCode_Addr2Line"}
* one line per code object:
  {"name": ..., "first_line": N, "table": "<hex>", "code_len": N,
   "lines": [line, count, line, count, ...], "beyond": [[offset, line], ...],
   "api_lines": [line, count, ...]}

"table" is the raw line table CPython decodes (``co_lnotab`` on 3.8/3.9,
``co_linetable`` on 3.10+). "lines" is the run-length encoded line CPython
reports for every instruction offset 0, 2, 4, ... < code_len (byte offsets),
-1 meaning "no line". "beyond" gives a few offsets at and past the end of the
bytecode.

The ground truth is ``PyCode_Addr2Line`` called through ctypes, which is the
function ``frame.f_lineno`` uses. If it cannot be called, the script falls
back to ``co_lines()`` (3.10+) or a ``co_lnotab`` walk (3.8/3.9) and says so
in the header's "source".

"api_lines" is the same per-instruction line as the Python-level API that
tools use gives it: ``co_positions()`` (3.11+, one entry per code unit,
caches included), ``co_lines()`` (3.10) or ``dis.findlinestarts()`` (3.8,
3.9); the header's "api" names it.

Code objects come from compiling (never executing) a fixed selection of
stdlib modules, recursively including every nested code object in
``co_consts``, plus a few synthetic sources exercising edge cases (huge line
gaps, long single lines, lines beyond 2**15, negative line deltas).

Usage: python dump_lines.py [MAX_MODULES]
"""

import json
import os
import sys
import sysconfig
import warnings

warnings.simplefilter("ignore")

# Modules present (as NAME.py or NAME/__init__.py, or a package directory
# whose every .py is taken when listed with a trailing "/") from 3.8 to 3.13.
MODULES = [
    "argparse",
    "ast",
    "base64",
    "bdb",
    "calendar",
    "collections",
    "configparser",
    "csv",
    "dataclasses",
    "datetime",
    "difflib",
    "dis",
    "doctest",
    "email/",
    "enum",
    "fractions",
    "ftplib",
    "functools",
    "gettext",
    "gzip",
    "http/",
    "inspect",
    "ipaddress",
    "json/",
    "logging/",
    "mailbox",
    "optparse",
    "pathlib",
    "pdb",
    "pickle",
    "pickletools",
    "platform",
    "pprint",
    "random",
    "shutil",
    "smtplib",
    "socket",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "textwrap",
    "threading",
    "tokenize",
    "traceback",
    "typing",
    "unittest/",
    "urllib/",
    "uuid",
    "zipfile",
    "_pydecimal",
    "_pyio",
    "turtle",
    "pydoc",
    "asyncio/",
]


def synthetic_sources():
    """Hand-made sources for the table encodings' corner cases."""
    out = []
    # A line gap of 1000 and of 40000 (lines beyond 2**15), negative deltas.
    src = "def far():\n    a = 1\n" + "\n" * 1000 + "    b = 2\n"
    src += "\n" * 40000
    src += "def later(x):\n    return (\n        x +\n        1,\n    x)\n"
    out.append(("<synthetic-gaps>", src))
    # One line with a lot of bytecode (byte deltas > 255).
    terms = " + ".join("f(%d, g[%d])" % (i, i) for i in range(300))
    src = "def long(f, g):\n    x = " + terms + "\n    return x\n"
    out.append(("<synthetic-longline>", src))
    # Multi-line expressions going back and forth, comprehensions, try/with.
    src = (
        "def mixed(a, b):\n"
        "    x = [\n"
        "        i\n"
        "        for i in a\n"
        "        if i\n"
        "    ]\n"
        "    try:\n"
        "        with open(\n"
        "            b\n"
        "        ) as f:\n"
        "            return f(\n"
        "                x,\n"
        "            )\n"
        "    except (ValueError,\n"
        "            TypeError) as e:\n"
        "        raise RuntimeError(\n"
        "            e) from None\n"
        "    finally:\n"
        "        pass\n"
        "    while a:\n"
        "        a -= 1\n"
        "    return lambda: (yield)\n"
        "class K:\n"
        "    async def m(self):\n"
        "        async with self as s:\n"
        "            async for q in s:\n"
        "                await q\n"
    )
    out.append(("<synthetic-mixed>", src))
    # A function whose body starts far below its def line.
    src = "def deco(f): return f\n@deco\n\n\n\ndef late(\n" + "\n" * 300 + "):\n" + "    pass\n"
    out.append(("<synthetic-late>", src))
    return out


def module_files(stdlib, names):
    files = []
    for name in names:
        if name.endswith("/"):
            d = os.path.join(stdlib, name[:-1])
            if not os.path.isdir(d):
                continue
            for entry in sorted(os.listdir(d)):
                if entry.endswith(".py"):
                    files.append(os.path.join(d, entry))
            continue
        for cand in (name + ".py", os.path.join(name, "__init__.py")):
            p = os.path.join(stdlib, cand)
            if os.path.isfile(p):
                files.append(p)
                break
    return files


def walk_codes(code):
    yield code
    for c in code.co_consts:
        if hasattr(c, "co_code"):
            for sub in walk_codes(c):
                yield sub


def make_addr2line():
    try:
        import ctypes

        f = ctypes.pythonapi.PyCode_Addr2Line
        f.argtypes = [ctypes.py_object, ctypes.c_int]
        f.restype = ctypes.c_int
        return f, "PyCode_Addr2Line"
    except Exception:
        return None, None


def fallback_lines(code, offsets):
    """Without ctypes: emulate PyCode_Addr2Line from Python-level APIs."""
    if hasattr(code, "co_lines"):
        ranges = list(code.co_lines())
        out = []
        for off in offsets:
            line = -1
            for start, end, ln in ranges:
                if start <= off < end:
                    line = -1 if ln is None else ln
                    break
            out.append(line)
        return out
    tab = code.co_lnotab
    out = []
    for off in offsets:
        line = code.co_firstlineno
        addr = 0
        for i in range(0, len(tab) - 1, 2):
            addr += tab[i]
            if addr > off:
                break
            d = tab[i + 1]
            line += d - 256 if d >= 128 else d
        out.append(line)
    return out


def api_lines(code, n_units):
    """The line of each code unit by the Python-level API (-1: no line)."""
    if hasattr(code, "co_positions"):
        return [-1 if p[0] is None else p[0] for p in code.co_positions()]
    if hasattr(code, "co_lines"):
        out = [-1] * n_units
        for start, end, line in code.co_lines():
            for off in range(start, end, 2):
                if off // 2 < n_units:
                    out[off // 2] = -1 if line is None else line
        return out
    import dis

    starts = list(dis.findlinestarts(code))
    out, j, cur = [], 0, code.co_firstlineno
    for unit in range(n_units):
        while j < len(starts) and starts[j][0] <= 2 * unit:
            cur = starts[j][1]
            j += 1
        out.append(cur)
    return out


def rle_of(lines):
    rle = []
    for ln in lines:
        if rle and rle[-2] == ln:
            rle[-1] += 1
        else:
            rle.extend((ln, 1))
    return rle


def main():
    max_modules = int(sys.argv[1]) if len(sys.argv) > 1 else len(MODULES)
    ver = sys.version_info
    if ver < (3, 10):
        fmt = "Lnotab"
    elif ver < (3, 11):
        fmt = "Linetable310"
    else:
        fmt = "Locations311"
    addr2line, source = make_addr2line()
    if addr2line is None:
        source = "co_lines" if ver >= (3, 10) else "co_lnotab walk"
    w = sys.stdout.write
    w(
        json.dumps(
            {
                "version": "%d.%d.%d" % ver[:3],
                "format": fmt,
                "source": source,
                "api": "co_positions"
                if ver >= (3, 11)
                else ("co_lines" if ver >= (3, 10) else "dis.findlinestarts"),
            }
        )
        + "\n"
    )

    stdlib = sysconfig.get_paths()["stdlib"]
    sources = []
    for path in module_files(stdlib, MODULES[:max_modules]):
        try:
            with open(path, "rb") as fh:
                sources.append((path, fh.read()))
        except OSError:
            pass
    sources.extend(synthetic_sources())

    for path, src in sources:
        try:
            top = compile(src, path, "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            continue
        base = os.path.basename(path)
        for code in walk_codes(top):
            table = code.co_lnotab if fmt == "Lnotab" else code.co_linetable
            code_len = len(code.co_code)
            offsets = list(range(0, code_len, 2))
            beyond_offs = [code_len, code_len + 2, code_len + 100]
            if addr2line is not None:
                lines = [addr2line(code, o) for o in offsets]
                beyond = [addr2line(code, o) for o in beyond_offs]
            else:
                lines = fallback_lines(code, offsets)
                beyond = fallback_lines(code, beyond_offs)
            rle = rle_of(lines)
            name = getattr(code, "co_qualname", code.co_name)
            w(
                json.dumps(
                    {
                        "name": "%s@%s:%d" % (name, base, code.co_firstlineno),
                        "first_line": code.co_firstlineno,
                        "table": table.hex(),
                        "code_len": code_len,
                        "lines": rle,
                        "beyond": [list(p) for p in zip(beyond_offs, beyond)],
                        "api_lines": rle_of(api_lines(code, len(offsets))),
                    }
                )
                + "\n"
            )


if __name__ == "__main__":
    main()
