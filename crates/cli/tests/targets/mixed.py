"""Target of crates/cli/tests/record.rs (output formats and flags): a
thread named "cruncher" spinning on one line in `busy_loop`, a thread named
"sleeper" asleep in `nap`, and the main thread asleep in `main`. Prints one
JSON line (see _truth.py) once they are parked, then runs until killed.
"""
import threading
import time

import _truth

HERE = _truth.markers(__file__)
FOREVER = 3600 * 24


def busy_loop():
    n = 0
    while True: n += 1  # @busy-line  # noqa: E701


def nap():
    time.sleep(FOREVER)  # @nap-line


def main():
    cruncher = threading.Thread(name="cruncher", target=busy_loop, daemon=True)
    sleeper = threading.Thread(name="sleeper", target=nap, daemon=True)
    cruncher.start()
    sleeper.start()
    threads = {
        cruncher: ("busy_loop", HERE["busy-line"], False),
        sleeper: ("nap", HERE["nap-line"], True),
    }
    snap = _truth.wait_parked(threads)
    docs = [_truth.thread_doc(t, snap[t], threads[t][2]) for t in threads]
    docs.append(_truth.thread_doc(threading.main_thread(),
                                  _truth.self_stack(HERE["main-line"]), True))
    _truth.emit({"markers": HERE, "threads": docs})
    time.sleep(FOREVER)  # @main-line


if __name__ == "__main__":
    main()
