#!/usr/bin/env python3
"""pyrometer's own CPU per thread sample on the example FastAPI service
(uvicorn, one worker) when its load is a sync `def` endpoint run in anyio's
thread pool (`GET /burn`: the request is found through the awaiting task)
against an async endpoint doing the same work (`POST /compute`: the scope is
on the loop thread's stack). Alternates the two over rounds, takes medians.

Usage: bench/threadpool_cost.py [--rounds N] [--seconds S] [--rate HZ]
Needs: cargo build --release; the example's venv (scripts/webenv.sh
fastapi-service). Only 127.0.0.1 is loaded.
"""
import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
PYROMETER = TARGET / "release" / "pyrometer"
LOADS = {
    "sync (threadpool)": ("get:/burn?n=20000=1", []),
    "async": ("post:/compute=1", ["--body", '{"n": 20000}']),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, deadline=30):
    t0 = time.time()
    while time.time() - t0 < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the service did not start")


def one_round(venv, mix, extra, seconds, rate):
    port = free_port()
    server = subprocess.Popen(
        [str(venv / "bin" / "uvicorn"), "app:app", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log"],
        cwd=ROOT / "examples" / "fastapi-service", stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(port)
        load = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "loadgen.py"), "--url",
             f"http://127.0.0.1:{port}", "--duration", str(seconds + 2), "--concurrency", "4",
             "--mix", mix, "--max-requests", "100000", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [str(PYROMETER), "record", "--pid", str(server.pid), "-r", str(rate), "-d",
                 str(seconds), "-f", "raw", "-o", os.path.join(tmp, "p.txt")],
                capture_output=True, text=True, timeout=seconds + 60)
        load.wait(timeout=seconds + 60)
        err = out.stderr
        samples = int(re.search(r"samples: (\d+) thread samples", err).group(1))
        cpu = float(re.search(r"pyrometer CPU: ([\d.]+) s", err).group(1))
        ticks = int(re.search(r"(\d+) ticks", err).group(1))
        top = next((l.strip() for l in err.splitlines()
                    if re.match(r"\s+(GET|POST|\?) ", l)), "")
        return cpu / max(samples, 1) * 1e6, samples, top, cpu / max(ticks, 1) * 1e6, samples / max(ticks, 1)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--rate", type=int, default=1000)
    a = ap.parse_args()
    venv = Path(subprocess.run(["bash", str(ROOT / "scripts" / "webenv.sh"), "fastapi-service"],
                               check=True, capture_output=True, text=True).stdout.split()[-1])
    results = {k: [] for k in LOADS}
    for _ in range(a.rounds):
        for name, (mix, extra) in LOADS.items():
            results[name].append(one_round(venv, mix, extra, a.seconds, a.rate))
    print(f"| load ({a.rate} Hz, {a.seconds:g} s, {a.rounds} rounds, medians) | pyrometer CPU per tick | threads per tick | per thread sample | top endpoint row |")
    print("|---|---|---|---|---|")
    for name, rs in results.items():
        us = statistics.median(r[0] for r in rs)
        tick = statistics.median(r[3] for r in rs)
        per_tick = statistics.median(r[4] for r in rs)
        print(f"| {name} | {tick:.1f} µs | {per_tick:.1f} | {us:.1f} µs | `{' '.join(rs[-1][2].split()[:5])}` |")


if __name__ == "__main__":
    main()
