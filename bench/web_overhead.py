#!/usr/bin/env python3
"""Throughput of the example Flask service under gunicorn (4 sync workers)
driven by wrk, with no profiler, with pyrometer --subprocesses at 100 Hz and
1 kHz (request attribution on), and py-spy --subprocesses at 100 Hz and
1 kHz, in the same run, as ratios. Alternates the configurations over rounds
and takes medians.

Usage: bench/web_overhead.py [--rounds N] [--seconds S]
Needs: cargo build --release; wrk (apt-get install wrk); the example's venv
(scripts/webenv.sh image-service); py-spy in ~/.cache/pyrometer/bench-venv.
Only 127.0.0.1 is loaded.
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
PYROMETER = ROOT / "target" / "release" / "pyrometer"
CACHE = Path(os.environ.get("PYROMETER_CACHE", Path.home() / ".cache" / "pyrometer"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(venv, port, tmp):
    env = dict(os.environ, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="4",
               GUNICORN_WORKER_CLASS="sync", GUNICORN_ACCESS_LOG=os.path.join(tmp, "access.log"))
    p = subprocess.Popen([str(venv / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", "app:app"],
                         cwd=ROOT / "examples" / "image-service", env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return p
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("gunicorn did not start")


def wrk(port, seconds):
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def profiler(tool, rate, master, tmp):
    out = os.path.join(tmp, f"{tool}-{rate}.txt")
    if tool == "pyrometer":
        cmd = [str(PYROMETER), "record", "--pid", str(master), "--subprocesses", "-r", str(rate),
               "-f", "raw", "-o", out, "--quiet"]
    else:
        cmd = [str(CACHE / "bench-venv" / "bin" / "py-spy"), "record", "--pid", str(master),
               "--subprocesses", "-r", str(rate), "-f", "raw", "-o", out]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    a = ap.parse_args()
    venv = Path(subprocess.check_output([str(ROOT / "scripts" / "webenv.sh"), "image-service"],
                                        text=True).strip())
    configs = [("none", 0), ("pyrometer", 100), ("pyrometer", 1000), ("py-spy", 100), ("py-spy", 1000)]
    results = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        svc = start_service(venv, port, tmp)
        try:
            wrk(port, 2)  # warm up
            for _ in range(a.rounds):
                for tool, rate in configs:
                    prof = None if tool == "none" else profiler(tool, rate, svc.pid, tmp)
                    time.sleep(1.5)
                    results[(tool, rate)].append(wrk(port, a.seconds))
                    if prof:
                        prof.send_signal(signal.SIGINT)
                        try:
                            prof.wait(timeout=30)
                        except subprocess.TimeoutExpired:
                            prof.kill()
        finally:
            os.killpg(svc.pid, signal.SIGTERM)
            svc.wait()
    base = statistics.median(results[("none", 0)])
    print("| gunicorn, 4 sync workers, wrk -t2 -c16 GET / | requests/s | vs unprofiled |")
    print("|---|---|---|")
    for (tool, rate), v in results.items():
        label = "unprofiled" if tool == "none" else f"{tool} --subprocesses {rate} Hz"
        m = statistics.median(v)
        print(f"| {label} | {m:.0f} | {100 * m / base:.1f} % |")


if __name__ == "__main__":
    main()
