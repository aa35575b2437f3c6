"""`python -m pyrometer ARGS...` runs the `pyrometer` executable with ARGS."""

import os
import sys

from pyrometer import find_binary


def main():
    try:
        binary = find_binary()
    except FileNotFoundError as err:
        sys.stderr.write("pyrometer: error: %s\n" % err)
        return 1
    # Replace this interpreter: signals, exit code and the terminal go
    # straight to the profiler.
    os.execv(binary, [binary] + sys.argv[1:])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
