#!/usr/bin/env python3
"""Soak: does pyrometer's memory stay bounded and its CPU per sample stay
flat over 24 hours' worth of 1 kHz samples?

The live sampler cannot take 86.4 M samples per thread in minutes on this
machine, so this replays a service-shaped stream of samples (the
`soak_replay` example of crates/profile: 4 gunicorn-like workers, 3 threads
each coming and going on reused idents, a dozen views with rotating lines,
requests of varying length with high-cardinality raw paths) into the
aggregated profile at full speed, exactly as `record` aggregates each
sample. Every --interval seconds it reads the replaying process's VmRSS
(/proc/PID/status) and CPU time (/proc/PID/stat) and its latest progress
line (samples so far, entries of each table).

Usage: bench/soak.py [--samples N] [--interval S] [--warmup FRACTION]
Needs: cargo build --release -p pyrometer-profile --example soak_replay
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
REPLAY = TARGET / "release" / "examples" / "soak_replay"
THREADS = 12  # busy threads in the stream: 4 processes x 3
TICKS_PER_SEC = os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SEC  # utime + stime


def end_samples(rows):
    return rows[-1]["samples"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=86_400_000 * THREADS)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--max-seconds", type=float, default=0,
                    help="stop the replay after this long (0: run to --samples) and report what was reached")
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of samples that is warm-up")
    a = ap.parse_args()
    if not REPLAY.exists():
        sys.exit(f"{REPLAY} is missing: cargo build --release -p pyrometer-profile --example soak_replay")
    p = subprocess.Popen([str(REPLAY), "--samples", str(a.samples), "--every", "200000"],
                         stdout=subprocess.PIPE, text=True)
    latest = {}

    def read_progress():
        for line in p.stdout:
            latest.update(json.loads(line))

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    rows = []
    stopped = False
    t0 = time.monotonic()
    while p.poll() is None:
        time.sleep(a.interval)
        try:
            row = dict(latest, wall=time.monotonic() - t0, rss_kb=rss_kb(p.pid), cpu=cpu_seconds(p.pid))
        except (FileNotFoundError, ProcessLookupError):
            break
        # Only readings that saw new progress (and a live process: a zombie shows no RSS).
        if "samples" in row and row["rss_kb"] > 0 and (not rows or row["samples"] > rows[-1]["samples"]):
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
        if a.max_seconds and row["wall"] > a.max_seconds:
            p.terminate()
            stopped = True
            break
    reader.join(timeout=10)
    if p.wait() != 0 and not stopped:
        sys.exit(f"soak_replay failed with {p.returncode}")
    if len(rows) < 3:
        sys.exit("too few readings: raise --samples or lower --interval")
    print("| wall s | M samples | h at 1 kHz (12 thr) | RSS MB | CPU s | µs CPU/sample (interval) | stacks | counts | strings | requests kept |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    prev = None
    step = max(1, len(rows) // 20)
    for i, r in enumerate(rows):
        per = ""
        if prev and r["samples"] > prev["samples"]:
            per = f"{(r['cpu'] - prev['cpu']) * 1e6 / (r['samples'] - prev['samples']):.2f}"
        if i % step == 0 or i == len(rows) - 1:
            print(f"| {r['wall']:.0f} | {r['samples'] / 1e6:.1f} | {r['samples'] / THREADS / 3.6e6:.2f} | "
                  f"{r['rss_kb'] / 1024:.1f} | {r['cpu']:.1f} | {per} | {r['stacks']} | {r['counts']} | "
                  f"{r['strings']} | {r['requests_kept']} |")
        prev = r
    if stopped:
        print(f"(stopped by --max-seconds {a.max_seconds:.0f} before --samples {a.samples:,})")
    warm = next(r for r in rows if r["samples"] >= a.warmup * end_samples(rows))
    end = rows[-1]
    dm = (end["samples"] - warm["samples"]) / 1e6
    growth = (end["rss_kb"] - warm["rss_kb"]) / dm if dm > 0 else 0.0
    cpu_warm = (end["cpu"] - warm["cpu"]) * 1e6 / max(1, end["samples"] - warm["samples"])
    print()
    print(f"samples: {end['samples']:,} thread samples ({end['samples'] / 3.6e6:.1f} h of one thread at 1 kHz, "
          f"{end['samples'] / THREADS / 3.6e6:.2f} h of all {THREADS} threads); raw paths generated: {end['paths_generated']:,}")
    print(f"RSS after warm-up ({warm['samples'] / 1e6:.1f} M samples): {warm['rss_kb'] / 1024:.1f} MB; "
          f"at the end: {end['rss_kb'] / 1024:.1f} MB; growth {growth:.2f} KB per million samples")
    print(f"CPU after warm-up: {cpu_warm:.3f} µs per sample; whole run {end['cpu'] * 1e6 / end['samples']:.3f} µs")


if __name__ == "__main__":
    main()
