"""Memory that grows at a known rate in a known function.

`grow` keeps 1 MiB (touched: bytearray zero-fills it) every 20 ms of its own
running; `steady` runs as long without keeping anything. They alternate
every 300 ms, so about half of the CPU samples are in each, and nearly all
of the RSS growth happens while `grow` runs. Prints a ready line, then runs
until it keeps argv[1] MiB (default 48; however loaded the machine, the
growth it shows is the same), or 60 s pass, and exits.
"""
import json
import os
import sys
import time

keep = []


def grow(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        keep.append(bytearray(1 << 20))
        spin_until = time.perf_counter() + 0.02
        while time.perf_counter() < spin_until:
            pass


def steady(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        spin_until = time.perf_counter() + 0.02
        while time.perf_counter() < spin_until:
            pass


def main():
    want_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 48
    print(json.dumps({"pid": os.getpid()}), flush=True)
    stop = time.time() + 60
    while time.time() < stop and len(keep) < want_mib:
        grow(0.3)
        steady(0.3)


main()
# Exit without freeing what was kept: RSS must not fall at the end.
sys.stdout.flush()
os._exit(0)
