#!/usr/bin/env python3
"""Throughput of the example image service (gunicorn, 4 sync workers) under
the bounded load generator, unprofiled and launched by `pyrometer record
--memory --subprocesses` (launch mode: the allocation hook preloaded into
the master and every forked worker, CPU sampling at 100 Hz alongside), in
the same run, alternating over rounds, medians.

The load is allocation-heavy: PNG images posted to /process (decoded,
filtered, encoded again), plus health checks. Reports requests/s, the ratio
to unprofiled, and from pyrometer's summary the sampled allocations and
that every worker was hooked.

Usage: bench/memory_service.py [--rounds N] [--seconds S] [--rate HZ]
       [--memory-sample-bytes N]
Needs: cargo build --release; scripts/webenv.sh image-service. Only
127.0.0.1 is loaded, bounded in time and count.
"""
import argparse
import json
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
PYROMETER = Path(os.environ.get("PYROMETER_BIN", ROOT / "target" / "release" / "pyrometer"))
MIX = "process:edges=2,process:thumbnail=2,process:blur=1,health=3"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port, proc, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited ({proc.returncode})")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the service did not answer /health")


def load(port, seconds):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "loadgen.py"), "--url",
                          f"http://127.0.0.1:{port}", "--duration", str(seconds), "--concurrency", "4",
                          "--max-requests", "1000000", "--mix", MIX, "--close", "--json"],
                         capture_output=True, text=True, check=True).stdout
    doc = json.loads(out.strip().splitlines()[-1])
    return float(doc["rps"])


def run(config, venv, a, tmp):
    port = free_port()
    env = dict(os.environ, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="4",
               GUNICORN_WORKER_CLASS="sync", GUNICORN_LOG_LEVEL="warning")
    service = [str(venv / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", "app:app"]
    summary = os.path.join(tmp, f"summary-{config}.txt")
    if config == "memory":
        cmd = [str(PYROMETER), "record", "--memory", "--memory-sample-bytes", str(a.memory_sample_bytes),
               "--subprocesses", "-r", str(a.rate), "-f", "pprof", "-o", os.path.join(tmp, "memory.pb.gz"),
               "--"] + service
    else:
        cmd = service
    err = open(summary, "w")
    proc = subprocess.Popen(cmd, cwd=ROOT / "examples" / "image-service", env=env,
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        wait_healthy(port, proc)
        load(port, 2)  # warm up every worker
        rps = load(port, a.seconds)
    finally:
        # SIGINT to pyrometer (it ends the command and writes its output);
        # SIGTERM to a bare gunicorn.
        os.kill(proc.pid, signal.SIGINT if config == "memory" else signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        err.close()
    text = open(summary, errors="replace").read()
    return rps, text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--memory-sample-bytes", type=int, default=524288)
    a = ap.parse_args()
    venv = Path(subprocess.check_output([str(ROOT / "scripts" / "webenv.sh"), "image-service"],
                                        text=True).strip())
    results = {"plain": [], "memory": []}
    last = ""
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for config in results:
                rps, text = run(config, venv, a, tmp)
                results[config].append(rps)
                print(f"round {r + 1}: {config} {rps:.1f} requests/s", file=sys.stderr)
                if config == "memory":
                    last = text
    base = statistics.median(results["plain"])
    mem = statistics.median(results["memory"])
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; {a.rounds} rounds of {a.seconds} s, medians")
    print("| image service, gunicorn 4 sync workers, loadgen 4 clients | requests/s | vs unprofiled |")
    print("|---|---|---|")
    print(f"| unprofiled | {base:.1f} | 100.0 % |")
    print(f"| record --memory --subprocesses -r {a.rate} (mean {a.memory_sample_bytes} B) "
          f"| {mem:.1f} | {100 * mem / base:.1f} % |")
    hooked = re.search(r"(\d+) processes hooked", last)
    sampled = re.search(r"(\d+) sampled allocations", last)
    print(f"\nlast --memory run: {sampled.group(1) if sampled else '?'} sampled allocations, "
          f"{hooked.group(1) if hooked else '?'} processes hooked")
    for line in last.splitlines():
        if "memory (" in line or "allocated" in line or "lost:" in line:
            print("  " + line.strip())


if __name__ == "__main__":
    main()
