"""Target of crates/cli/tests/record.rs: CPU time split 3:1 between
`heavy` and `light` by construction.

Both functions run the same inner loop; `heavy` runs it 3 times per call,
`light` once, and the main loop alternates them. One `light` call is
calibrated to about TARGET_MS of CPU, so a heavy+light cycle spans about 20
sampling periods at 200 Hz: the samples are spread evenly over each cycle
rather than each landing at a random phase, which keeps the sampling error
well under the test's tolerance.

The script checks the construction: it measures the thread CPU time of
every call (with n/10 iterations, so that there are many calls) for 0.6 s
before the ready line (`calibration`) and for 0.6 s after the profiled
part (`measured`, on the last line, printed before it exits). The profiled part (DURATION seconds) makes no system call between
the calls: timing each call there would itself show up in the profile (a
thread_time() call is much slower while a profiler reads the process).
SIGUSR1 ends the profiled part early: the attach test records until the
target has had enough CPU time (a loaded machine may give it a small share
of a CPU), then stops it that way. With `cpu`, DURATION is seconds of
the thread's CPU time instead (checked once per heavy+light cycle; at
most 60 s of wall time): the launch test, which cannot stop it, gets as
many cycles however loaded the machine.

usage: split.py DURATION [cpu]
"""
import json
import os
import signal
import sys
import time

START = time.monotonic()
TARGET_MS = 24.6  # one light call: ~20 samples per 98 ms heavy+light cycle at 200 Hz


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
    time of each call. `ratio` is the median over the alternations of
    heavy/light CPU time (robust against a call slowed down by other load,
    e.g. a busy hyperthread sibling or steal time in a VM); `sum_ratio`
    compares the totals."""
    clock = time.thread_time
    heavies, lights = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end or len(lights) < 25:
        t0 = clock()
        heavy(n)
        t1 = clock()
        light(n)
        t2 = clock()
        heavies.append(t1 - t0)
        lights.append(t2 - t1)
    pairs = [h / max(l, 1e-9) for h, l in zip(heavies, lights)]
    return {"heavy": sum(heavies), "light": sum(lights), "calls": len(lights),
            "ratio": median(pairs),
            "sum_ratio": sum(heavies) / max(sum(lights), 1e-9)}


stop = []


def alternate(n, seconds):
    """Alternate heavy and light for `seconds` or until SIGUSR1, with
    nothing else in the loop (time.monotonic is a vDSO call: no system
    call)."""
    calls = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop:
        heavy(n)
        light(n)
        calls += 1
    return calls


def alternate_cpu(n, seconds):
    """Alternate heavy and light until the thread has used `seconds` of
    CPU (one thread_time() system call per cycle) or 60 s have passed."""
    calls = 0
    end = time.thread_time() + seconds
    wall_end = time.monotonic() + 60
    while time.thread_time() < end and time.monotonic() < wall_end and not stop:
        heavy(n)
        light(n)
        calls += 1
    return calls


def main():
    duration = float(sys.argv[1])
    signal.signal(signal.SIGUSR1, lambda *_: stop.append(True))
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
    # The cost of both functions is linear in n (the same loop, 3 times vs
    # once): the check uses n/10, so that 0.6 s holds enough alternations
    # for a stable median even on a loaded machine.
    before = measure(n // 10, 0.6)
    print(json.dumps({
        "pid": os.getpid(),
        "version": "%d.%d.%d" % sys.version_info[:3],
        "file": __file__,
        "n": n,
        "calibration": before,
    }), flush=True)
    cpu0, wall0 = time.thread_time(), time.monotonic()
    by_cpu = sys.argv[2:3] == ["cpu"]
    calls = (alternate_cpu if by_cpu else alternate)(n, duration)
    share = (time.thread_time() - cpu0) / (time.monotonic() - wall0)
    after = measure(n // 10, 0.6)
    print(json.dumps({"calls": calls, "cpu_share": share, "measured": after,
                      "seconds": time.monotonic() - START}), flush=True)


if __name__ == "__main__":
    main()
