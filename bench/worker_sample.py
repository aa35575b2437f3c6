#!/usr/bin/env python3
"""pyrometer's work per sample of a gunicorn worker serving requests, for
one or more builds side by side: `bench-sample --aggregate` (read, walk,
request attribution, aggregation, back to back) on each of the example
Flask service's 4 sync workers while wrk loads it, the builds alternated
over rounds (medians of the rounds; each round's value is the mean of the
workers).

Usage: bench/worker_sample.py [--rounds N] [--samples N] [--record SECONDS] NAME=BINARY...

--record SECONDS instead measures `record --pid MASTER --subprocesses -r
1000 -d SECONDS` under the same load: pyrometer's CPU time (rusage) per
process-sample (thread samples in the folded output), where the 1 ms
between samples makes nearly every sample see a new request.

The service runs on core 0, wrk and pyrometer on core 1 (as
web_overhead.py --pin). Needs wrk and the example's venv
(scripts/webenv.sh image-service). Only 127.0.0.1 is loaded; each wrk run is
bounded by its -d. A measurement with another busy process on the machine
just before or after it is taken again (after 20 s, up to 10 times).
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from web_overhead import free_port, start_service

ROOT = Path(__file__).resolve().parent.parent
SERVICE_CPU = ["taskset", "-c", "0"]
CLIENT_CPU = ["taskset", "-c", "1"]
KEYS = ["cpu_us_per_sample", "wall_us_per_sample", "bytes_prefetched_per_sample",
        "pages_prefetched_per_sample", "memory_reads_per_sample", "torn_threads", "thread_samples"]


def workers(master, want=4):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(f"/proc/{master}/task/{master}/children") as f:
            pids = [int(x) for x in f.read().split()]
        if len(pids) >= want:
            return pids
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn has fewer than {want} workers")


def cpu_ticks_by_pid():
    ticks = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks[int(d)] = int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks


def foreign_cpu(service_pgid, window=0.5):
    """CPU seconds other processes (not this script's, not the service's)
    used over `window`: another user's benchmark makes a round worthless."""
    mine = {os.getpid()}
    before = cpu_ticks_by_pid()
    time.sleep(window)
    after = cpu_ticks_by_pid()
    total = 0
    for pid, t in after.items():
        if pid in mine:
            continue
        try:
            if os.getpgid(pid) in (service_pgid, os.getpgid(0)):
                continue
        except OSError:
            continue
        total += t - before.get(pid, 0)
    return total / os.sysconf("SC_CLK_TCK")


def measure_quiet(run, service_pgid, tries=10):
    """`run()` with no other busy process before or after it; retried
    (waiting 20 s) up to `tries` times, else the last result is kept and flagged."""
    for attempt in range(tries):
        if foreign_cpu(service_pgid) > 0.05:
            time.sleep(20)
            continue
        m = run()
        if foreign_cpu(service_pgid) <= 0.05:
            return m
        time.sleep(20)
    m["contended"] = 1
    return m


def measure(binary, pids, port, samples):
    """bench-sample on each worker while wrk loads the service: the mean of the workers."""
    load = subprocess.Popen(CLIENT_CPU + ["wrk", "-t1", "-c16", "-d60s", f"http://127.0.0.1:{port}/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        docs = []
        for pid in pids:
            out = subprocess.run(CLIENT_CPU + [binary, "bench-sample", "--pid", str(pid),
                                               "--samples", str(samples), "--aggregate"],
                                 check=True, capture_output=True, text=True, timeout=120).stdout
            docs.append(json.loads(out))
    finally:
        load.terminate()
        load.wait()
    return {k: statistics.mean(d[k] for d in docs) for k in KEYS}


def measure_record(binary, master, port, seconds, tmp):
    """record at 1 kHz of every worker while wrk loads the service: CPU per sample."""
    out = os.path.join(tmp, "record.txt")
    load = subprocess.Popen(CLIENT_CPU + ["wrk", "-t1", "-c16", f"-d{seconds + 10}s", f"http://127.0.0.1:{port}/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        prof = subprocess.Popen(CLIENT_CPU + [binary, "record", "--pid", str(master), "--subprocesses",
                                              "-r", "1000", "-d", str(seconds), "-f", "raw", "-o", out, "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(prof.pid, 0)
        prof.returncode = status
    finally:
        load.terminate()
        load.wait()
    samples = 0
    with open(out) as f:
        for line in f:
            samples += int(line.rsplit(" ", 1)[1])
    cpu = ru.ru_utime + ru.ru_stime
    return {"cpu_us_per_sample": cpu * 1e6 / max(samples, 1), "samples": samples, "cpu_s": cpu}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=50000)
    ap.add_argument("--record", type=int, metavar="SECONDS", help="measure record -r 1000 instead")
    ap.add_argument("builds", nargs="+", help="NAME=BINARY")
    a = ap.parse_args()
    builds = [b.split("=", 1) for b in a.builds]
    keys = ["cpu_us_per_sample", "samples", "cpu_s"] if a.record else KEYS
    venv = Path(subprocess.check_output([str(ROOT / "scripts" / "webenv.sh"), "image-service"],
                                        text=True).strip())
    results = {name: [] for name, _ in builds}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        svc = start_service(venv, port, tmp, cpu=SERVICE_CPU)
        try:
            pids = workers(svc.pid)
            for r in range(a.rounds):
                # Rotate the order so no build always runs first in a round.
                order = builds[r % len(builds):] + builds[:r % len(builds)]
                for name, binary in order:
                    if a.record:
                        m = measure_quiet(lambda: measure_record(binary, svc.pid, port, a.record, tmp), svc.pid)
                    else:
                        m = measure_quiet(lambda: measure(binary, pids, port, a.samples), svc.pid)
                    results[name].append(m)
                    print(f"round {r + 1} {name}: " + ", ".join(f"{k} {m[k]:.2f}" for k in keys)
                          + (" (other processes were busy)" if m.get("contended") else ""), flush=True)
        finally:
            os.killpg(svc.pid, signal.SIGTERM)
            svc.wait()
    print("| build | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, runs in results.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(x[k] for x in runs):.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
