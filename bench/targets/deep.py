"""One busy thread at a fixed stack depth (argv[1] frames), optionally with
N idle threads (argv[2]). Prints its work rate to stdout every second when
argv[3] == 'report'."""
import sys
import threading
import time

DEPTH = int(sys.argv[1]) if len(sys.argv) > 1 else 20
IDLE = int(sys.argv[2]) if len(sys.argv) > 2 else 0
REPORT = len(sys.argv) > 3 and sys.argv[3] == "report"


def idle(stop):
    stop.wait()


def work(duration):
    # The measured unit of work: a fixed loop.
    deadline = time.perf_counter() + duration
    n = 0
    while time.perf_counter() < deadline:
        s = 0
        for i in range(1000):
            s += i
        n += 1
    return n


def rec(depth):
    if depth <= 0:
        while True:
            n = work(1.0)
            if REPORT:
                print(n, flush=True)
    return rec(depth - 1)


stop = threading.Event()
for i in range(IDLE):
    threading.Thread(target=idle, args=(stop,), daemon=True, name=f"idle-{i}").start()
# <module> and rec(...) frames: the innermost is work(), so depth = DEPTH.
rec(DEPTH - 3)
