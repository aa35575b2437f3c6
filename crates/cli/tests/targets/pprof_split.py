"""Target of crates/cli/tests/pprof.rs: a thread named "cruncher" spends
its CPU time 3:1 in `heavy` and `light` (the same loop, run 3 times vs
once per call; one light call is calibrated to about 25 ms, so that a
heavy+light cycle spans many sampling periods and the samples do not alias
with it), while the main thread sleeps in `main`. Prints one JSON
line once the cruncher runs, then runs until killed (or DURATION seconds).

usage: pprof_split.py [DURATION]
"""
import json
import os
import sys
import threading
import time

TARGET_MS = 25.0


def heavy(n):
    s = 0
    for _ in range(3):
        for i in range(n):
            s += i & 7
    return s


def light(n):
    s = 0
    for _ in range(1):
        for i in range(n):
            s += i & 7
    return s


def calibrate():
    n = 20000
    light(n)
    times = []
    for _ in range(5):
        t0 = time.thread_time()
        light(n)
        times.append(time.thread_time() - t0)
    times.sort()
    return max(1000, int(n * TARGET_MS / 1000 / max(times[2], 1e-6)))


def crunch(started):
    n = calibrate()
    started.set()
    while True:
        heavy(n)
        light(n)


def main():
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 3600.0
    started = threading.Event()
    t = threading.Thread(name="cruncher", target=crunch, args=(started,), daemon=True)
    t.start()
    started.wait()
    print(json.dumps({"pid": os.getpid(), "version": "%d.%d.%d" % sys.version_info[:3],
                      "file": __file__}), flush=True)
    time.sleep(duration)


if __name__ == "__main__":
    main()
