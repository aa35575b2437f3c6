"""Target of crates/cli/tests/top.rs: keeps one CPU busy, about three
quarters of the time in `hot_spin` and a quarter in `warm_spin`, until
SECONDS pass (a bound, so a forgotten target cannot run forever). A second
thread sleeps in `nap_forever`: idle, seen only with `--idle`.

usage: top_busy.py SECONDS
"""
import json
import os
import sys
import threading
import time


def hot_spin(n):
    s = 0
    for i in range(3 * n):
        s += i & 7
    return s


def warm_spin(n):
    s = 0
    for i in range(n):
        s += i & 7
    return s


def nap_forever():
    while True:
        time.sleep(0.5)


def main(seconds):
    threading.Thread(target=nap_forever, name="napper", daemon=True).start()
    print(json.dumps({"pid": os.getpid()}), flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        hot_spin(20000)
        warm_spin(20000)


main(float(sys.argv[1]))
