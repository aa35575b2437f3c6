"""Target of crates/cli/tests/faults.rs and never_harm.rs: a program that
misbehaves on request. The first argument is the mode:

  spin            keep a CPU busy in `spin_here`, printing a progress line
                  ({"progress": N}) every 50 ms, forever
  exit SECS       spin for SECS seconds, then exit with status 0
  exec SECS       spin for SECS seconds, then exec /bin/sleep 30
  churn SECS      start and join a thread about every millisecond for SECS
                  seconds, then exit
  fork N          fork N short-lived children one after the other (each
                  busy for a moment), print {"forked": N}, then sleep
  threads N DEPTH N threads parked DEPTH frames deep (a long dump), forever

Prints one JSON line ({"pid": ...}) once it runs.
"""
import json
import os
import sys
import threading
import time


def ready(**extra):
    print(json.dumps(dict(pid=os.getpid(), **extra)), flush=True)


def spin_here(seconds, progress):
    deadline = time.monotonic() + seconds
    next_report = time.monotonic()
    n = 0
    while time.monotonic() < deadline:
        n += 1
        if progress and time.monotonic() >= next_report:
            print(json.dumps({"progress": n}), flush=True)
            next_report = time.monotonic() + 0.05


def short_life():
    # Live a fraction of a millisecond, long enough to be sampled now and then.
    deadline = time.monotonic() + 0.0003
    while time.monotonic() < deadline:
        pass


def churn(seconds):
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        t = threading.Thread(target=short_life)
        t.start()
        t.join()
        n += 1
        time.sleep(0.001)
    return n


def child_work():
    x = 0
    for i in range(20000):
        x += i
    return x


def fork_children(n):
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            child_work()
            os._exit(0)
        os.waitpid(pid, 0)


def park(depth, started):
    if depth > 0:
        return park(depth - 1, started)
    started.release()
    time.sleep(3600)


def main():
    mode = sys.argv[1]
    if mode == "spin":
        ready()
        spin_here(float("inf"), True)
    elif mode == "exit":
        ready()
        spin_here(float(sys.argv[2]), False)
        sys.exit(0)
    elif mode == "exec":
        ready()
        spin_here(float(sys.argv[2]), False)
        os.execv("/bin/sleep", ["sleep", "30"])
    elif mode == "churn":
        ready()
        churn(float(sys.argv[2]))
    elif mode == "fork":
        n = int(sys.argv[2])
        ready()
        fork_children(n)
        print(json.dumps({"forked": n}), flush=True)
        time.sleep(3600)
    elif mode == "threads":
        count, depth = int(sys.argv[2]), int(sys.argv[3])
        sys.setrecursionlimit(depth + 100)
        started = threading.Semaphore(0)
        for i in range(count):
            threading.Thread(target=park, args=(depth, started), daemon=True).start()
        for _ in range(count):
            started.acquire()
        ready(threads=count, depth=depth)
        time.sleep(3600)
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
