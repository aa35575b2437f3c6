"""Target of crates/cli/tests/output_safety.rs: names far longer than
pyrometer keeps. The main thread spins in a function whose name and file
name are 100,000 characters long; a thread whose name is as long sleeps.

Prints one JSON line ({"pid", "length"}) just before it spins.
"""
import json
import os
import sys
import threading
import time
import types

LENGTH = 100_000
NAME = "n" * LENGTH
FILE_NAME = "f" * (LENGTH - 3) + ".py"

_ns = {}
exec(compile("def spin():\n    while True:\n        pass\n", FILE_NAME, "exec"), _ns)
_code = _ns["spin"].__code__
if sys.version_info >= (3, 11):
    _code = _code.replace(co_name=NAME, co_qualname=NAME)
else:
    _code = _code.replace(co_name=NAME)
spin = types.FunctionType(_code, _ns, NAME)


def nap():
    time.sleep(3600)


def main():
    threading.Thread(name="t" * LENGTH, target=nap, daemon=True).start()
    print(json.dumps({"pid": os.getpid(), "length": LENGTH}), flush=True)
    spin()


if __name__ == "__main__":
    main()
