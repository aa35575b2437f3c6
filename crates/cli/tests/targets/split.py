"""Target of crates/cli/tests/record.rs: CPU time split 3:1 between
`heavy` and `light` by construction.

Both functions run the same inner loop; `heavy` runs it 3 times per call,
`light` once, and the main loop alternates them. The script checks the
construction: it calibrates the loop (one `light` call takes about
TARGET_MS) and measures the thread CPU time of every call for 0.5 s before
the ready line (`calibration`) and for 0.5 s after the profiled part
(`measured`, on the last line, printed before it exits). The profiled part
(DURATION seconds) makes no system call between the calls: timing each
call there would itself show up in the profile (a thread_time() call is
much slower while a profiler reads the process).

usage: split.py DURATION
"""
import json
import os
import sys
import time

TARGET_MS = 7.3  # one light call; not a divisor of the 5 ms sampling period


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


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0.0


def measure(n, seconds):
    """Alternate heavy and light for `seconds`, measuring the thread CPU
    time of each call. `ratio` compares the medians (robust against a
    call stretched by preemption or, in a VM, steal time); `sum_ratio`
    compares the totals."""
    clock = time.thread_time
    heavies, lights = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end or len(lights) < 5:
        t0 = clock()
        heavy(n)
        t1 = clock()
        light(n)
        t2 = clock()
        heavies.append(t1 - t0)
        lights.append(t2 - t1)
    return {"heavy": sum(heavies), "light": sum(lights), "calls": len(lights),
            "ratio": median(heavies) / max(median(lights), 1e-9),
            "sum_ratio": sum(heavies) / max(sum(lights), 1e-9)}


def alternate(n, seconds):
    """Alternate heavy and light for `seconds`, with nothing else in the
    loop (time.monotonic is a vDSO call: no system call)."""
    calls = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        heavy(n)
        light(n)
        calls += 1
    return calls


def main():
    duration = float(sys.argv[1])
    # Calibrate n so that light(n) takes about TARGET_MS of CPU.
    n = 20000
    for _ in range(3):
        light(n)
    times = []
    for _ in range(7):
        t0 = time.thread_time()
        light(n)
        times.append(time.thread_time() - t0)
    n = max(1000, int(n * TARGET_MS / 1000 / max(median(times), 1e-6)))
    before = measure(n, 0.5)
    print(json.dumps({
        "pid": os.getpid(),
        "version": "%d.%d.%d" % sys.version_info[:3],
        "file": __file__,
        "n": n,
        "calibration": before,
    }), flush=True)
    calls = alternate(n, duration)
    after = measure(n, 0.5)
    print(json.dumps({"calls": calls, "measured": after}), flush=True)


if __name__ == "__main__":
    main()
