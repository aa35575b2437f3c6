#!/usr/bin/env python3
"""pyrometer's own CPU at 1 kHz with two builds side by side (alternating,
so both see the same machine load): on the example Flask service under
gunicorn (4 sync workers) driven by wrk, and on bench/targets/deep.py with
1 busy + 50 idle threads. For comparing a change to how idle threads are
read (e.g. the binary of main vs a branch's).

Usage: bench/unscheduled_cost.py BEFORE_BIN AFTER_BIN [--rounds N] [--seconds S]

Needs wrk and the example's venv (scripts/webenv.sh image-service), as
bench/web_overhead.py. Only 127.0.0.1 is loaded.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import web_overhead  # noqa: E402


def record_cpu(binary, pid, seconds, tmp):
    """CPU seconds (user + system, wait4) of one `record` run, and its summary."""
    out = os.path.join(tmp, "x.txt")
    p = subprocess.Popen([binary, "record", "--pid", str(pid), "--subprocesses", "-r", "1000",
                          "-d", str(seconds), "-f", "raw", "-o", out, "--quiet"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(p.pid, 0)
    err = p.stderr.read()
    if status != 0:
        raise RuntimeError(f"{binary} failed: {err}")
    return ru.ru_utime + ru.ru_stime, err


def ticks_of(summary):
    return max(int(re.search(r"s, (\d+) ticks at", summary).group(1)), 1)


def wrk_async(port, seconds):
    return subprocess.Popen(["wrk", "-t2", "-c16", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                            stdout=subprocess.PIPE, text=True)


def wrk_rate(p):
    out, _ = p.communicate(timeout=120)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    a = ap.parse_args()
    bins = {"before": a.before, "after": a.after}
    venv = Path(subprocess.check_output([str(ROOT / "scripts" / "webenv.sh"), "image-service"],
                                        text=True).strip())
    cpu = {("web", k): [] for k in bins} | {("deep", k): [] for k in bins}
    # CPU µs per tick: late ticks (skipped) lower the CPU of a slow build.
    per_tick = {k: [] for k in cpu}
    rps = {k: [] for k in ["none", *bins]}
    with tempfile.TemporaryDirectory() as tmp:
        port = web_overhead.free_port()
        svc = web_overhead.start_service(venv, port, tmp)
        try:
            web_overhead.wrk(port, 2)  # warm up
            for _ in range(a.rounds):
                w = wrk_async(port, a.seconds + 1)
                rps["none"].append(wrk_rate(w))
                for name, binary in bins.items():
                    w = wrk_async(port, a.seconds + 1)
                    time.sleep(0.5)
                    c, err = record_cpu(binary, svc.pid, a.seconds, tmp)
                    rps[name].append(wrk_rate(w))
                    cpu[("web", name)].append(100 * c / a.seconds)
                    per_tick[("web", name)].append(1e6 * c / ticks_of(err))
        finally:
            os.killpg(svc.pid, signal.SIGTERM)
            svc.wait()
        deep = subprocess.Popen([sys.executable, str(ROOT / "bench" / "targets" / "deep.py"), "20", "50"],
                                stdout=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            for _ in range(a.rounds):
                for name, binary in bins.items():
                    c, err = record_cpu(binary, deep.pid, a.seconds, tmp)
                    cpu[("deep", name)].append(100 * c / a.seconds)
                    per_tick[("deep", name)].append(1e6 * c / ticks_of(err))
        finally:
            deep.kill()
            deep.wait()
    med = {k: statistics.median(v) for k, v in cpu.items()}
    tick = {k: statistics.median(v) for k, v in per_tick.items()}
    print("| target, record -r 1000 --subprocesses | before: pyrometer CPU, % of one core (µs/tick) "
          "| after | after / before (per tick) |")
    print("|---|---|---|---|")
    for t, label in (("web", "gunicorn 4 sync workers under wrk -t2 -c16"), ("deep", "deep.py 1 busy + 50 idle threads")):
        b, f = med[(t, "before")], med[(t, "after")]
        tb, tf = tick[(t, "before")], tick[(t, "after")]
        print(f"| {label} | {b:.1f} ({tb:.0f}) | {f:.1f} ({tf:.0f}) | {f / b:.2f} ({tf / tb:.2f}) |")
    print("runs, CPU %:", {f"{t} {k}": [round(x, 1) for x in v] for (t, k), v in cpu.items()})
    base = statistics.median(rps["none"])
    print(f"\nwrk requests/s: unprofiled {base:.0f} {rps['none']}; " + "; ".join(
        f"{k} {statistics.median(rps[k]):.0f} ({100 * statistics.median(rps[k]) / base:.1f} %) {rps[k]}" for k in bins))


if __name__ == "__main__":
    main()
