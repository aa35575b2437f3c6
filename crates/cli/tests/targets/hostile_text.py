"""Target of crates/cli/tests/output_safety.rs: names that would break an
output format or a terminal if written as they are.

The main thread runs a chain of functions, each calling the next, whose
names (co_name, and co_qualname on 3.11+) hold `;` and newlines (folded
stacks), terminal escape sequences, quotes and backslashes (JSON), markup
(SVG); the chain is called from a function whose file name is hostile too,
and the innermost one spins with a hostile local variable. A thread with a
hostile name sleeps. The command line carries an escape sequence.

Prints one JSON line ({"pid", "names", "file_name", "thread_name"}) just
before entering the chain, then spins there until killed.
"""
import json
import os
import sys
import threading
import time
import types

NAMES = [
    "semi;colon",
    "new\nline",
    "esc\x1b[31mred\x1b]0;title\x07",
    "cr\rtab\t",
    "quote\"back\\slash'",
    "<script>alert(1)</script>",
    "c1\u009bcontrol",
    "fake (x.py:1) 99",
]
FILE_NAME = "evil;file\n\x1b[2J<b>.py"
THREAD_NAME = "thr\x1b[31m;\n<i>"

CHAIN = []


def layer(i):
    payload = "\x1b[2J;\n<u>"  # a hostile local for dump --locals
    if i + 1 < len(CHAIN):
        return CHAIN[i + 1](i + 1)
    n = 0
    while True:
        n += 1
    return payload


def renamed(func, name):
    """`func` with co_name (and co_qualname on 3.11+) set to `name`."""
    if sys.version_info >= (3, 11):
        code = func.__code__.replace(co_name=name, co_qualname=name)
    else:
        code = func.__code__.replace(co_name=name)
    f = types.FunctionType(code, func.__globals__, name)
    f.__qualname__ = name
    return f


CHAIN.extend(renamed(layer, n) for n in NAMES)

_src = compile("def drive(chain):\n    chain[0](0)\n", FILE_NAME, "exec")
_ns = {}
exec(_src, _ns)
drive = _ns["drive"]


def nap():
    time.sleep(3600)


def main():
    threading.Thread(name=THREAD_NAME, target=nap, daemon=True).start()
    print(json.dumps({
        "pid": os.getpid(),
        "names": NAMES,
        "file_name": FILE_NAME,
        "thread_name": THREAD_NAME,
    }), flush=True)
    drive(CHAIN)


if __name__ == "__main__":
    main()
