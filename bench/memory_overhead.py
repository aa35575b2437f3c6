#!/usr/bin/env python3
"""Cost of `pyrometer record --memory` for the target (BENCHMARKS.md).

Runs bench/targets/alloc_work.py (a fixed amount of allocation-heavy,
web-service-like work; it pins itself to core 0) in three configurations,
alternating over rounds, and reports the median time of the work:

* plain: the interpreter alone;
* PYTHONMALLOC=malloc: what --memory sets, without the hook;
* --memory: `pyrometer record --memory` (default mean 512 KiB; pyrometer on
  core 1) launching it.

Needs a release build (cargo build --release).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYROMETER = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "pyrometer"
WORK = ROOT / "bench" / "targets" / "alloc_work.py"


def seconds(out):
    lines = [l for l in out.splitlines() if l.strip()]
    return float(lines[-1])


def run(config, python, rounds_of_work, sample_bytes):
    env = dict(os.environ)
    cmd = [python, str(WORK), str(rounds_of_work)]
    if config == "malloc":
        env["PYTHONMALLOC"] = "malloc"
    if config == "memory":
        tmp = tempfile.mkdtemp(prefix="pyrometer-bench-")
        cmd = ["taskset", "-c", "1", str(PYROMETER), "record", "--memory", "--quiet",
               "--memory-sample-bytes", str(sample_bytes),
               "-f", "raw", "-o", os.path.join(tmp, "out.txt"), "--"] + cmd
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"{config}: failed ({p.returncode}): {p.stderr}")
    return seconds(p.stdout), p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default="/root/.pyenv/versions/3.12.1/bin/python3")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", type=int, default=20000)
    ap.add_argument("--memory-sample-bytes", type=int, default=512 * 1024)
    args = ap.parse_args()
    if not PYROMETER.exists():
        sys.exit(f"build first: cargo build --release ({PYROMETER} is missing)")
    times = {"plain": [], "malloc": [], "memory": []}
    summary = ""
    for r in range(args.rounds):
        for config in times:
            t, err = run(config, args.python, args.work, args.memory_sample_bytes)
            times[config].append(t)
            if config == "memory":
                summary = "\n".join(l for l in err.splitlines() if "sampled allocations" in l or "memory (" in l or "handoff" in l)
        print(f"round {r + 1}: " + ", ".join(f"{c} {v[-1]:.3f} s" for c, v in times.items()), flush=True)
    base = statistics.median(times["plain"])
    print(f"\n{args.python}, {args.work} requests of work, median of {args.rounds} rounds")
    print("| configuration | work time (s) | vs plain |")
    print("|---|---|---|")
    for c, label in [("plain", "interpreter alone"), ("malloc", "PYTHONMALLOC=malloc"),
                     ("memory", f"record --memory (mean {args.memory_sample_bytes} B)")]:
        m = statistics.median(times[c])
        print(f"| {label} | {m:.3f} | {100 * (m / base - 1):+.1f} % |")
    print("\nlast --memory run:\n" + summary)


if __name__ == "__main__":
    main()
