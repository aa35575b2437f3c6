"""Target of crates/cli/tests/html.rs: names that are markup.

The main thread keeps a CPU busy in three functions whose names
(co_name, and co_qualname on 3.11+) are HTML/JavaScript, called from a
function compiled under a file name that is markup too. A thread with a
markup name sleeps. The hot line's source ends in a comment that is markup.
An HTML report that inserted any of it as markup would run it; it must show
it as text.

Prints one JSON line ({"pid", "names", "file_name", "thread_name"}) once
everything runs, then spins until killed.
"""
import json
import os
import sys
import threading
import time
import types

NAMES = [
    "<script>alert(1)</script>",
    "</script><script>window.__pwned=1</script>",
    "<img src=x onerror=window.__pwned=2>",
]
FILE_NAME = "</script><b>evil</b>.py"
THREAD_NAME = "<img src=x onerror=window.__pwned=3>"


def _work(deadline):
    n = 0
    while time.perf_counter() < deadline: n += 1  # </script><img src=x onerror=window.__pwned=4>  # noqa: E501,E701
    return n


def renamed(func, name):
    """`func` with co_name (and co_qualname on 3.11+) set to `name`."""
    if sys.version_info >= (3, 11):
        code = func.__code__.replace(co_name=name, co_qualname=name)
    else:
        code = func.__code__.replace(co_name=name)
    f = types.FunctionType(code, func.__globals__, name)
    f.__qualname__ = name
    return f


HOSTILE = [renamed(_work, n) for n in NAMES]

# A driver function whose code object's file name is markup.
_src = compile(
    "def drive(funcs, clock):\n"
    "    for share, f in zip((4, 2, 1), funcs):\n"
    "        f(clock() + 0.004 * share)\n",
    FILE_NAME,
    "exec",
)
_ns = {}
exec(_src, _ns)
drive = _ns["drive"]


def nap():
    time.sleep(3600)


def main():
    threading.Thread(name=THREAD_NAME, target=nap, daemon=True).start()
    drive(HOSTILE, time.perf_counter)
    print(json.dumps({
        "pid": os.getpid(),
        "names": NAMES,
        "file_name": FILE_NAME,
        "thread_name": THREAD_NAME,
    }), flush=True)
    while True:
        drive(HOSTILE, time.perf_counter)


if __name__ == "__main__":
    main()
