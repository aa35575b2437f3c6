"""Target of crates/cli/tests/top.rs: keeps one CPU busy, about three
quarters of the time in `hot_spin` and a quarter in `warm_spin`, until
SECONDS pass (a bound, so a forgotten target cannot run forever).

usage: top_busy.py SECONDS
"""
import json
import os
import sys
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


def main(seconds):
    print(json.dumps({"pid": os.getpid()}), flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        hot_spin(20000)
        warm_spin(20000)


main(float(sys.argv[1]))
