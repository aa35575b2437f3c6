#!/usr/bin/env python3
"""Throughput of the example Flask service under gunicorn (4 sync workers)
driven by wrk, with no profiler, with pyrometer --subprocesses at 100 Hz and
1 kHz (request attribution on), and py-spy --subprocesses at 100 Hz and
1 kHz, in the same run, as ratios. Each round runs every configuration once,
in an order rotated from round to round (so a drift of the service over the
run does not favour whichever configuration comes first), and each
configuration is compared with the unprofiled run of its own round; the
medians and ranges of those ratios over rounds are printed. An unprofiled
configuration measured a second time in each round (A/A) shows the noise of
the setup: a difference smaller than its range is not a measured slowdown.

Usage: bench/web_overhead.py [--rounds N] [--seconds S] [--pin]

--pin runs gunicorn and its workers on core 0 and wrk and the profiler on
core 1: the service has a core the profiler does not compete for, as a
production host with spare capacity has. Without it everything shares both
cores and the service saturates them, so any CPU the profiler uses is taken
from the service.
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


SERVICE_CPU = []
CLIENT_CPU = []


def start_service(venv, port, tmp, cpu=None):
    """The example service under gunicorn (4 sync workers) on 127.0.0.1:port,
    started under the `cpu` command prefix (default SERVICE_CPU), once it
    answers /health."""
    env = dict(os.environ, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="4",
               GUNICORN_WORKER_CLASS="sync", GUNICORN_ACCESS_LOG=os.path.join(tmp, "access.log"))
    prefix = SERVICE_CPU if cpu is None else cpu
    p = subprocess.Popen(prefix + [str(venv / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", "app:app"],
                         cwd=ROOT / "examples" / "image-service", env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
            return p
        except OSError:
            time.sleep(0.05)
    os.killpg(p.pid, signal.SIGTERM)
    raise RuntimeError("gunicorn did not start within 30 s")


def wrk(port, seconds):
    out = subprocess.run(CLIENT_CPU + ["wrk", "-t2", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
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
    return subprocess.Popen(CLIENT_CPU + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def reap_cpu(prof, started, timeout=30):
    """Wait for the profiler to end; its CPU time as a share of one core over
    the time it ran (user + system, from wait4's rusage)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, _, ru = os.wait4(prof.pid, os.WNOHANG)
        if pid:
            prof.returncode = 0
            return (ru.ru_utime + ru.ru_stime) / max(time.monotonic() - started, 1e-9)
        if time.monotonic() > deadline:
            prof.kill()
            _, _, ru = os.wait4(prof.pid, 0)
            prof.returncode = -9
            return (ru.ru_utime + ru.ru_stime) / max(time.monotonic() - started, 1e-9)
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--pin", action="store_true", help="service on core 0; wrk and profiler on core 1")
    a = ap.parse_args()
    if a.pin:
        SERVICE_CPU.extend(["taskset", "-c", "0"])
        CLIENT_CPU.extend(["taskset", "-c", "1"])
    venv = Path(subprocess.check_output([str(ROOT / "scripts" / "webenv.sh"), "image-service"],
                                        text=True).strip())
    configs = [("none", 0), ("none-again", 0), ("pyrometer", 100), ("pyrometer", 1000),
               ("py-spy", 100), ("py-spy", 1000)]
    results = {c: [] for c in configs}
    cpu = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        svc = start_service(venv, port, tmp)
        try:
            wrk(port, 2)  # warm up
            for round_no in range(a.rounds):
                shift = round_no % len(configs)
                for tool, rate in configs[shift:] + configs[:shift]:
                    profiled = not tool.startswith("none")
                    prof = profiler(tool, rate, svc.pid, tmp) if profiled else None
                    started = time.monotonic()
                    time.sleep(1.5)
                    results[(tool, rate)].append(wrk(port, a.seconds))
                    if prof:
                        prof.send_signal(signal.SIGINT)
                        cpu[(tool, rate)].append(reap_cpu(prof, started))
        finally:
            os.killpg(svc.pid, signal.SIGTERM)
            svc.wait()
    base = results[("none", 0)]
    where = "service on core 0, wrk and profiler on core 1" if a.pin else "all on both cores"
    print(f"| gunicorn, 4 sync workers, wrk -t2 -c16 GET / ({where}), {a.rounds} rounds "
          "| requests/s | vs unprofiled of the same round: median (range) "
          "| profiler CPU, % of one core |")
    print("|---|---|---|---|")
    for (tool, rate), v in results.items():
        label = {"none": "unprofiled", "none-again": "unprofiled again (A/A)"}.get(
            tool, f"{tool} --subprocesses {rate} Hz")
        ratios = [100 * x / b for x, b in zip(v, base)]
        spread = "" if tool == "none" else f" ({min(ratios):.1f}–{max(ratios):.1f})"
        share = f"{100 * statistics.median(cpu[(tool, rate)]):.1f} %" if cpu[(tool, rate)] else ""
        print(f"| {label} | {statistics.median(v):.0f} | {statistics.median(ratios):.1f} %{spread} "
              f"| {share} |")


if __name__ == "__main__":
    main()
