#!/usr/bin/env python3
"""`pyrometer top` against `pyrometer record`: achieved sampling rate and
pyrometer's own CPU at a given rate, on one busy 20-frame thread
(bench/targets/deep.py) with 50 idle threads.

Usage: bench/top_rate.py [--seconds N] [--rates 100,1000] [--python PATH]

Needs a release build (cargo build --release) and tmux. `top` runs in a
private tmux server (100x30); its status line is read once a second after
a 3 s warm-up and the medians of the achieved rate and own CPU are
reported. `record` runs for the same time; its summary gives the same two
numbers. Prints a markdown table.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYROMETER = Path(os.environ.get("PYROMETER", ROOT / "target" / "release" / "pyrometer"))
TARGET = ROOT / "bench" / "targets" / "deep.py"


def tmux(sock, *args):
    return subprocess.run(
        ["tmux", "-L", sock, *args], check=True, capture_output=True, text=True, timeout=20
    ).stdout


def measure_top(pid, rate, seconds):
    sock = f"pyrometer-bench-{os.getpid()}"
    tmux(sock, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "100", "-y", "30",
         f"env TERM=xterm-256color {PYROMETER} top --pid {pid} -r {rate}")
    rates, cpus = [], []
    try:
        time.sleep(3)
        for _ in range(int(seconds)):
            time.sleep(1)
            screen = tmux(sock, "capture-pane", "-p", "-t", "t")
            m = re.search(r"(\d+)/\d+ Hz .* own CPU ([\d.]+)%", screen)
            if m:
                rates.append(float(m.group(1)))
                cpus.append(float(m.group(2)))
        tmux(sock, "send-keys", "-t", "t", "q")
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
    if not rates:
        sys.exit("no status line read from top")
    return statistics.median(rates), statistics.median(cpus)


def measure_record(pid, rate, seconds):
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            [str(PYROMETER), "record", "--pid", str(pid), "-r", str(rate), "-d", str(seconds),
             "-f", "raw", "-o", os.path.join(d, "p.txt"), "--quiet"],
            capture_output=True, text=True, timeout=seconds + 60,
        ).stderr
    hz = re.search(r"ticks at ([\d.]+) Hz", out)
    cpu = re.search(r"\(([\d.]+) % of one core\)", out)
    if not hz or not cpu:
        sys.exit(f"cannot read record's summary:\n{out}")
    return float(hz.group(1)), float(cpu.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rates", default="100,1000")
    ap.add_argument("--python", default=str(Path.home() / ".pyenv/versions/3.12.1/bin/python3"))
    args = ap.parse_args()
    if not PYROMETER.exists():
        sys.exit("build first: cargo build --release")
    target = subprocess.Popen([args.python, str(TARGET), "20", "50"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        print("| rate | top achieved Hz | top own CPU % | record achieved Hz | record own CPU % |")
        print("|---|---|---|---|---|")
        for rate in [int(r) for r in args.rates.split(",")]:
            t_hz, t_cpu = measure_top(target.pid, rate, args.seconds)
            r_hz, r_cpu = measure_record(target.pid, rate, args.seconds)
            print(f"| {rate} | {t_hz:.0f} | {t_cpu:.1f} | {r_hz:.0f} | {r_cpu:.1f} |")
    finally:
        target.kill()
        target.wait()


if __name__ == "__main__":
    main()
