#!/usr/bin/env python3
"""Cost of `pyrometer record --memory` for the target (BENCHMARKS.md).

Runs bench/targets/alloc_work.py (a fixed amount of allocation-heavy,
web-service-like work; it pins itself to core 0) in these configurations,
alternating over rounds, and reports the median time of the work:

* plain: the interpreter alone;
* malloc: PYTHONMALLOC=malloc (what --memory sets), without the hook;
* memory: `pyrometer record --memory` at the default mean (512 KiB;
  pyrometer on core 1) launching it;
* memory64k: the same at one sample per 64 KiB;
* scalene: Scalene's memory mode (`python -m scalene run --memory`), with
  --scalene: every configuration then runs on the interpreter of
  ~/.cache/pyrometer/bench-venv, where Scalene is installed from PyPI.

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
CACHE = Path(os.environ.get("PYROMETER_CACHE", Path.home() / ".cache" / "pyrometer"))
VENV = CACHE / "bench-venv"


def ensure_scalene():
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    if not has_scalene(str(python)):
        subprocess.check_call([str(VENV / "bin" / "pip"), "install", "-q", "scalene"])
    return str(python)


def seconds(out):
    """(wall, cpu) seconds of the work; a profiler may print after them."""
    wall = cpu = None
    for line in reversed([l.strip() for l in out.splitlines() if l.strip()]):
        if cpu is None and line.startswith("cpu "):
            cpu = float(line[4:])
            continue
        if cpu is not None:
            try:
                wall = float(line)
                break
            except ValueError:
                continue
    if wall is None or cpu is None:
        raise ValueError(f"no times in the output: {out[-2000:]}")
    return wall, cpu


def run(config, python, rounds_of_work):
    env = dict(os.environ)
    cmd = [python, str(WORK), str(rounds_of_work)]
    tmp = tempfile.mkdtemp(prefix="pyrometer-bench-")
    if config == "malloc":
        env["PYTHONMALLOC"] = "malloc"
    if config.startswith("memory"):
        sample_bytes = 64 * 1024 if config == "memory64k" else 512 * 1024
        cmd = ["taskset", "-c", "1", str(PYROMETER), "record", "--memory", "--quiet",
               "--memory-sample-bytes", str(sample_bytes),
               "-f", "raw", "-o", os.path.join(tmp, "out.txt"), "--"] + cmd
    if config == "scalene":
        # Scalene 2.x: memory is profiled by default (CPU too: it cannot be
        # turned off), one sample per 1 MiB allocated by default.
        cmd = [python, "-m", "scalene", "run", "--memory", "-o", os.path.join(tmp, "scalene.json"),
               str(WORK), "---", str(rounds_of_work)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"{config}: failed ({p.returncode}): {p.stderr[-4000:]}")
    return seconds(p.stdout), p.stderr


def has_scalene(python):
    return subprocess.run([python, "-c", "import scalene"], capture_output=True).returncode == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default="/root/.pyenv/versions/3.12.1/bin/python3")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", type=int, default=100000)
    ap.add_argument("--scalene", action="store_true",
                    help="also run Scalene's memory mode (all configurations on the bench venv's interpreter)")
    args = ap.parse_args()
    if not PYROMETER.exists():
        sys.exit(f"build first: cargo build --release ({PYROMETER} is missing)")
    configs = ["plain", "malloc", "memory", "memory64k"]
    if args.scalene:
        args.python = ensure_scalene()
        configs.append("scalene")
    times = {c: [] for c in configs}
    cpus = {c: [] for c in configs}
    summary = ""
    for r in range(args.rounds):
        for config in configs:
            (t, cpu), err = run(config, args.python, args.work)
            times[config].append(t)
            cpus[config].append(cpu)
            if config == "memory":
                summary = "\n".join(l for l in err.splitlines()
                                    if "sampled allocations" in l or "memory (" in l or "walked in the target" in l)
        print(f"round {r + 1}: " + ", ".join(f"{c} {v[-1]:.3f} s (cpu {cpus[c][-1]:.3f})" for c, v in times.items()),
              flush=True)
    print(f"\n{args.python}, {args.work} requests of work, median of {args.rounds} rounds")
    # Under load, the machine's speed drifts between rounds: the ratio to
    # the plain run of the same round is steadier than ratios of medians.
    print("| configuration | wall (s) | wall vs plain | target CPU (s) | CPU vs plain | CPU vs plain, median of per-round ratios |")
    print("|---|---|---|---|---|---|")
    labels = {
        "plain": "interpreter alone",
        "malloc": "PYTHONMALLOC=malloc",
        "memory": "record --memory (default mean 512 KiB)",
        "memory64k": "record --memory --memory-sample-bytes 65536",
        "scalene": "scalene run --memory (Scalene 2.4.0, its default 1 MiB window)",
    }
    wall_base = statistics.median(times["plain"])
    cpu_base = statistics.median(cpus["plain"])
    for c in configs:
        w = statistics.median(times[c])
        m = statistics.median(cpus[c])
        paired = statistics.median(t / p for t, p in zip(cpus[c], cpus["plain"]))
        print(f"| {labels[c]} | {w:.3f} | {100 * (w / wall_base - 1):+.1f} % | {m:.3f} | "
              f"{100 * (m / cpu_base - 1):+.1f} % | {100 * (paired - 1):+.1f} % |")
    print("\nlast --memory run:\n" + summary)


if __name__ == "__main__":
    main()
