"""pyrometer: a sampling profiler for live Python processes and web services.

The profiler is the `pyrometer` executable installed with this package (it
is a Rust program that reads the target's memory from outside); this package
only finds it, so that `python -m pyrometer ...` works where the scripts
directory is not on PATH.
"""

import os
import shutil
import sys
import sysconfig

__all__ = ["find_binary"]

_EXE = "pyrometer"


def _candidates():
    # Where pip puts a wheel's scripts: the scheme of this interpreter
    # (venv, system, prefix), the user scheme (pip install --user), and
    # `bin` beside the package for `pip install --target DIR`.
    yield sysconfig.get_path("scripts")
    try:
        yield sysconfig.get_path("scripts", os.name + "_user")
    except KeyError:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(os.path.dirname(here), "bin")


def find_binary():
    """The path of the installed `pyrometer` executable."""
    for directory in _candidates():
        if not directory:
            continue
        path = os.path.join(directory, _EXE)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which(_EXE)
    if found:
        return found
    raise FileNotFoundError(
        "the pyrometer executable was not found in "
        + ", ".join(d for d in _candidates() if d)
        + " nor on PATH; reinstall with `pip install --force-reinstall pyrometer`"
    )
