#!/usr/bin/env python3
"""pyrometer vs py-spy, side by side, in the same run, as ratios.

Usage: bench/run.py [--quick] [--python PATH] [--out FILE] [--only PARTS]

PARTS is a comma-separated subset of cost,torn,syscalls,slowdown,paired
(default: all). PYROMETER_BIN overrides the binary (default target/release/pyrometer,
e.g. $CARGO_TARGET_DIR/release/pyrometer).

Needs a release build (cargo build --release) and py-spy, which it installs
into ~/.cache/pyrometer/bench-venv from PyPI. Measures:
  1. CPU per sample (one thread; 20- and 100-frame stacks): each profiler
     records at its highest rate for a few seconds; its CPU time (from
     getrusage) divided by the samples it took. Also pyrometer's work per
     sample back to back (bench-sample), which no clock spin inflates.
  2. Highest sustained rate on one busy thread: samples per wall second.
  3. Target slowdown at 1 kHz: the busy script's own work rate with no
     profiler, with pyrometer, with py-spy (default, blocking) and py-spy
     --nonblocking; also with 50 idle threads.
  4. The same slowdown within one target process (paired): unprofiled and
     profiled windows alternate, which cancels process-to-process noise;
     with no idle thread and with 50.
Prints a markdown table (and writes JSON with --out).
"""
import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYROMETER = Path(os.environ.get("PYROMETER_BIN", ROOT / "target" / "release" / "pyrometer"))
CACHE = Path(os.environ.get("PYROMETER_CACHE", Path.home() / ".cache" / "pyrometer"))
VENV = CACHE / "bench-venv"
TARGET = ROOT / "bench" / "targets" / "deep.py"


def ensure_pyspy():
    exe = VENV / "bin" / "py-spy"
    if not exe.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(VENV / "bin" / "pip"), "install", "-q", "py-spy"])
    return exe


# On a 2-core machine the target runs on core 0 and the profiler on core 1,
# so a profiler's own CPU does not show up as target slowdown by competing
# for the same core; what remains is its real effect on the target.
TARGET_CPU = ["taskset", "-c", "0"]
PROFILER_CPU = ["taskset", "-c", "1"]


def start_target(python, depth, idle=0, report=False):
    args = TARGET_CPU + [python, str(TARGET), str(depth), str(idle)] + (["report"] if report else [])
    p = subprocess.Popen(args, stdout=subprocess.PIPE if report else subprocess.DEVNULL, text=True)
    time.sleep(1.0)
    return p


def run_child(cmd, seconds):
    """Run cmd for `seconds`, then stop it with SIGINT as a user would (py-spy's
    -d counts samples, not seconds, so it cannot bound a high-rate run);
    return (output, cpu seconds, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen(PROFILER_CPU + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, cpu, wall


def count_raw_samples(path):
    total = 0
    with open(path) as f:
        for line in f:
            line = line.rstrip()
            if line:
                total += int(line.rsplit(" ", 1)[1])
    return total


def measure_cost(tool, pyspy, python, depth, seconds, rate=100000):
    target = start_target(python, depth)
    try:
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out.txt")
            if tool == "pyrometer":
                cmd = [str(PYROMETER), "record", "--pid", str(target.pid), "-r", str(rate),
                       "-f", "raw", "-o", out, "--quiet"]
            else:
                cmd = [str(pyspy), "record", "--pid", str(target.pid), "--nonblocking",
                       "-r", str(rate), "-f", "raw", "-o", out]
            text, cpu, wall = run_child(cmd, seconds)
            samples = count_raw_samples(out) if os.path.exists(out) else 0
    finally:
        target.kill()
        target.wait()
    if samples == 0:
        raise RuntimeError(f"{tool} took no samples:\n{text}")
    return {"samples": samples, "cpu_s": cpu, "seconds": wall,
            "cpu_us_per_sample": cpu * 1e6 / samples, "rate": samples / wall}


def measure_work(python, depth, samples=20000):
    """pyrometer's own work per sample, back to back with no clock between
    samples (`bench-sample --aggregate`: read, walk, aggregate): what a
    sample costs whatever the rate. At -r 100000 `record` spins to keep
    its schedule whenever a sample takes less than the 10 µs period, so
    its CPU per sample cannot show a cost below 10 µs."""
    target = start_target(python, depth)
    try:
        out = subprocess.run(PROFILER_CPU + [str(PYROMETER), "bench-sample", "--pid", str(target.pid),
                                             "--samples", str(samples), "--aggregate"],
                             check=True, capture_output=True, text=True).stdout
    finally:
        target.kill()
        target.wait()
    return json.loads(out)


def measure_syscalls(tool, pyspy, python, depth, seconds):
    """System calls per sample (all of them, counted by strace -c -f) at 200 Hz."""
    target = start_target(python, depth)
    try:
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out.txt")
            counts = os.path.join(d, "strace.txt")
            # Both bounded by -d here (at 200 Hz py-spy keeps up, so its
            # sample-counting -d is close to seconds too): strace does not
            # pass SIGINT on to its tracee.
            if tool == "pyrometer":
                cmd = [str(PYROMETER), "record", "--pid", str(target.pid), "-r", "200",
                       "-d", str(seconds), "-f", "raw", "-o", out, "--quiet"]
            else:
                cmd = [str(pyspy), "record", "--pid", str(target.pid), "--nonblocking",
                       "-r", "200", "-d", str(seconds), "-f", "raw", "-o", out]
            run_child(["strace", "-c", "-f", "-o", counts] + cmd, seconds * 10 + 30)
            samples = count_raw_samples(out) if os.path.exists(out) else 0
            total = 0
            by_name = {}
            for line in open(counts):
                parts = line.split()
                if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                    by_name[parts[-1]] = int(parts[3])
                    total += int(parts[3])
    finally:
        target.kill()
        target.wait()
    if samples == 0:
        raise RuntimeError(f"{tool} took no samples under strace")
    reads = by_name.get("process_vm_readv", 0)
    return {"samples": samples, "syscalls_per_sample": total / samples,
            "process_vm_readv_per_sample": reads / samples}


# churn.py's callers can only be at their call lines, calling what those
# lines call: `down` calls itself at line 10, the module calls `down` and
# `random.randint` at line 14.
CHURN_CALLS = {"down": (10, {"down"}), "<module>": (14, {"down", "Random.randint", "randint"})}


def impossible_stacks(path):
    """Thread samples (from folded stacks, root first) with a churn.py caller
    at a line that calls nothing, or calling a function it cannot call:
    undetected torn reads."""
    bad = 0
    for line in open(path):
        line = line.rstrip()
        if not line:
            continue
        stack, count = line.rsplit(" ", 1)
        frames = stack.split(";")
        for caller, callee in zip(frames, frames[1:]):
            m = re.fullmatch(r"(\S+) \(churn\.py:(\d+)\)", caller)
            if not m:
                continue
            line_no, callees = CHURN_CALLS.get(m.group(1), (None, set()))
            if int(m.group(2)) != line_no or callee.split(" (")[0] not in callees:
                bad += int(count)
                break
    return bad


def measure_timer(seconds):
    """CPU per tick of pyrometer's sampling clock at 1 kHz doing nothing else
    (on the profiler's core, as the profilers run): the cost of sleeping and
    waking that any profiler sampling at 1 kHz pays."""
    out = subprocess.run(PROFILER_CPU + [str(PYROMETER), "bench-timer", "--rate", "1000",
                                         "--duration", str(seconds)],
                         capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    return json.loads(out)["cpu_us_per_tick"]


def kept_samples(path):
    return sum(int(line.rsplit(" ", 1)[1]) for line in open(path) if line.strip())


def measure_torn(python, seconds, pyspy=None):
    """Share of thread samples dropped as torn at 1 kHz on churn.py, the
    share of kept ones with an impossible caller line, and how many reads
    were torn and read again. With `pyspy`, py-spy --nonblocking's share of
    impossible samples on the same target instead."""
    churn = ROOT / "bench" / "targets" / "churn.py"
    target = subprocess.Popen(TARGET_CPU + [python, str(churn)])
    time.sleep(1.0)
    try:
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out.txt")
            if pyspy:
                cmd = [str(pyspy), "record", "--pid", str(target.pid), "--nonblocking", "-r", "1000",
                                      "-d", str(seconds), "-f", "raw", "-o", out]
            else:
                cmd = [str(PYROMETER), "record", "--pid", str(target.pid), "-r", "1000",
                       "-d", str(seconds), "-f", "raw", "-o", out]
            text, cpu, _ = run_child(cmd, seconds + 30)
            impossible = impossible_stacks(out)
            kept = kept_samples(out)
    finally:
        target.kill()
        target.wait()
    if pyspy:
        return {"kept": kept, "impossible": impossible, "cpu_s": cpu,
                "impossible_pct": 100.0 * impossible / max(1, kept)}
    kept = int(re.search(r"samples: (\d+) thread samples", text).group(1))
    torn = int(re.search(r"(\d+) thread samples dropped as torn", text).group(1))
    retried = re.search(r"\((\d+) torn reads read again\)", text)
    retried = int(retried.group(1)) if retried else 0
    failed = int(re.search(r"errors: (\d+)", text).group(1))
    ticks = int(re.search(r"(\d+) ticks at", text).group(1))
    return {"kept": kept, "torn_threads": torn, "failed_ticks": failed, "ticks": ticks, "retried": retried,
            "impossible": impossible, "cpu_s": cpu,
            "torn_pct": 100.0 * (torn + failed) / max(1, kept + torn + failed),
            "retried_per_tick": retried / max(1, ticks),
            "impossible_pct": 100.0 * impossible / max(1, kept)}


def measure_slowdown(tool, pyspy, python, idle, seconds):
    """The target's work rate (loops/s) while `tool` samples it at 1 kHz."""
    target = start_target(python, 20, idle=idle, report=True)
    prof = None
    try:
        if tool == "pyrometer":
            prof = subprocess.Popen(
                PROFILER_CPU + [str(PYROMETER), "record", "--pid", str(target.pid), "-r", "1000", "-d", str(seconds + 3),
                 "-f", "raw", "-o", os.path.join(tempfile.gettempdir(), "bench-pyrometer.txt"), "--quiet"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif tool.startswith("py-spy"):
            extra = ["--nonblocking"] if tool == "py-spy --nonblocking" else []
            prof = subprocess.Popen(PROFILER_CPU + [str(pyspy), "record", "--pid", str(target.pid), "-r", "1000",
                                     "-d", str(seconds + 3), "-f", "raw",
                                     "-o", os.path.join(tempfile.gettempdir(), "bench-pyspy.txt")] + extra,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Skip the first report (attach), then average `seconds` reports.
        target.stdout.readline()
        rates = [int(target.stdout.readline()) for _ in range(seconds)]
    finally:
        if prof:
            prof.kill()
            prof.wait()
        target.kill()
        target.wait()
    return statistics.median(rates)


def profiler_cmd(tool, pyspy, pid, seconds):
    if tool == "pyrometer":
        return PROFILER_CPU + [str(PYROMETER), "record", "--pid", str(pid), "-r", "1000", "-d", str(seconds),
                               "-f", "raw", "-o", os.path.join(tempfile.gettempdir(), "bench-pyrometer.txt"),
                               "--quiet"]
    extra = ["--nonblocking"] if tool == "py-spy --nonblocking" else []
    return PROFILER_CPU + [str(pyspy), "record", "--pid", str(pid), "-r", "1000", "-d", str(seconds), "-f", "raw",
                           "-o", os.path.join(tempfile.gettempdir(), "bench-pyspy.txt")] + extra


def measure_paired(tool, pyspy, python, pairs, idle=0, window=3):
    """Slowdown within ONE target process: windows of `window` one-second
    work reports alternate unprofiled / profiled, so differences between
    processes (memory placement, which core's cache state) cancel. Returns
    the ratio profiled / mean of the unprofiled windows either side, per
    pair."""
    target = start_target(python, 20, idle=idle, report=True)
    ratios = []
    try:
        def window_rate():
            return statistics.mean(int(target.stdout.readline()) for _ in range(window))
        target.stdout.readline()
        before = window_rate()
        for _ in range(pairs):
            prof = subprocess.Popen(profiler_cmd(tool, pyspy, target.pid, window + 3),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            target.stdout.readline()  # attaching
            during = window_rate()
            prof.kill()
            prof.wait()
            target.stdout.readline()  # detaching
            after = window_rate()
            ratios.append(during / ((before + after) / 2))
            before = after
    finally:
        target.kill()
        target.wait()
    return ratios


PARTS = ("cost", "torn", "syscalls", "slowdown", "paired")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--python", default="/root/.pyenv/versions/3.12.1/bin/python3")
    ap.add_argument("--out")
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated subset of " + ",".join(PARTS))
    ap.add_argument("--rounds", type=int, help="rounds of alternating configurations (default 3, --quick 2)")
    a = ap.parse_args()
    parts = set(a.only.split(","))
    if not parts <= set(PARTS):
        sys.exit(f"--only: choose from {','.join(PARTS)}")
    if not PYROMETER.exists():
        sys.exit(f"build first: cargo build --release (or set PYROMETER_BIN; {PYROMETER} is missing)")
    pyspy = ensure_pyspy()
    secs = 3 if a.quick else 5
    # Alternate the configurations over several rounds and take the median,
    # so drift in the machine's speed hits all of them alike.
    rounds = a.rounds or (2 if a.quick else 3)
    result = {"python": a.python, "rounds": rounds, "cost": {}, "slowdown": {}}
    print(f"\nPython: {a.python}; py-spy: {subprocess.check_output([str(pyspy), '--version'], text=True).strip()}; "
          f"{rounds} rounds, medians; load average before: {os.getloadavg()[0]:.1f}\n")
    if "cost" in parts:
        runs = {}
        timer = []
        for _ in range(rounds):
            for depth in (20, 100):
                for tool in ("pyrometer", "py-spy"):
                    runs.setdefault((tool, depth), []).append(measure_cost(tool, pyspy, a.python, depth, secs))
            for depth in (20, 100):
                runs.setdefault(("work", depth), []).append(measure_work(a.python, depth))
            # At 1 kHz both sleep between samples: the CPU per sample of a
            # usual recording, sleep and wake-up included.
            for tool in ("pyrometer", "py-spy"):
                runs.setdefault((tool + " 1kHz", 20), []).append(
                    measure_cost(tool, pyspy, a.python, 20, secs, rate=1000))
            timer.append(measure_timer(secs))
        result["cost"]["timer 1kHz"] = {"cpu_us_per_tick": statistics.median(timer), "runs": timer}
        for (tool, depth), values in runs.items():
            if tool == "work":
                result["cost"][f"pyrometer work depth {depth}"] = {
                    "cpu_us_per_sample": statistics.median(v["cpu_us_per_sample"] for v in values),
                    "runs": values}
                continue
            result["cost"][f"{tool} depth {depth}"] = {
                "cpu_us_per_sample": statistics.median(v["cpu_us_per_sample"] for v in values),
                "rate": statistics.median(v["rate"] for v in values),
                "runs": values}
        print("| stack | pyrometer µs CPU/sample | py-spy --nonblocking µs CPU/sample | ratio | pyrometer max rate | py-spy max rate | ratio | pyrometer work µs/sample (bench-sample) |")
        print("|---|---|---|---|---|---|---|---|")
        for depth in (20, 100):
            p = result["cost"][f"pyrometer depth {depth}"]
            s = result["cost"][f"py-spy depth {depth}"]
            w = result["cost"][f"pyrometer work depth {depth}"]
            print(f"| {depth} frames | {p['cpu_us_per_sample']:.1f} | {s['cpu_us_per_sample']:.1f} | "
                  f"{s['cpu_us_per_sample'] / p['cpu_us_per_sample']:.1f}× cheaper | {p['rate']:.0f}/s | "
                  f"{s['rate']:.0f}/s | {p['rate'] / s['rate']:.1f}× | {w['cpu_us_per_sample']:.1f} |")
        p = result["cost"]["pyrometer 1kHz depth 20"]
        s = result["cost"]["py-spy 1kHz depth 20"]
        print(f"\nAt 1 kHz, 20 frames: pyrometer {p['cpu_us_per_sample']:.1f} µs CPU/sample, py-spy --nonblocking "
              f"{s['cpu_us_per_sample']:.1f} µs CPU/sample ({s['cpu_us_per_sample'] / p['cpu_us_per_sample']:.1f}× cheaper)")
        floor = result["cost"]["timer 1kHz"]["cpu_us_per_tick"]
        pw, sw = p["cpu_us_per_sample"] - floor, s["cpu_us_per_sample"] - floor
        print(f"The clock alone at 1 kHz (pyrometer bench-timer: sleep and wake-up, no sampling) costs {floor:.1f} µs "
              f"CPU/tick; above it, pyrometer {pw:.1f} µs, py-spy {sw:.1f} µs"
              + (f" ({sw / pw:.1f}× cheaper)" if pw > 0 else ""))
    if "torn" in parts:
        # Rounds of churn.py vary several-fold on this VM: at least five.
        runs, pyspy_runs = [], []
        for _ in range(max(rounds, 5)):
            runs.append(measure_torn(a.python, secs))
            pyspy_runs.append(measure_torn(a.python, secs, pyspy))
        result["torn"] = {"runs": runs, "pyspy_runs": pyspy_runs,
                          "torn_pct": statistics.median(r["torn_pct"] for r in runs),
                          "impossible_pct": statistics.median(r["impossible_pct"] for r in runs),
                          "pyspy_impossible_pct": statistics.median(r["impossible_pct"] for r in pyspy_runs)}
        print("\n| churn.py at 1 kHz, round | pyrometer samples kept | torn reads read again, per tick | dropped as torn | "
              "kept with an impossible caller | pyrometer CPU | py-spy --nonblocking: kept with an impossible caller |")
        print("|---|---|---|---|---|---|---|")
        for i, (t, s) in enumerate(zip(runs, pyspy_runs)):
            print(f"| {i + 1} | {t['kept']} | {t['retried_per_tick']:.2f} | {t['torn_threads'] + t['failed_ticks']} ({t['torn_pct']:.2f} %) | "
                  f"{t['impossible']} ({t['impossible_pct']:.2f} %) | {t['cpu_s']:.2f} s | "
                  f"{s['impossible']} of {s['kept']} ({s['impossible_pct']:.2f} %) |")
        print(f"| median | | | {result['torn']['torn_pct']:.2f} % | {result['torn']['impossible_pct']:.2f} % | | "
              f"{result['torn']['pyspy_impossible_pct']:.2f} % |")
    if "syscalls" in parts:
        result["syscalls"] = {tool: measure_syscalls(tool, pyspy, a.python, 20, secs)
                              for tool in ("pyrometer", "py-spy")}
        p, s = result["syscalls"]["pyrometer"], result["syscalls"]["py-spy"]
        print("\n| one 20-frame thread at 200 Hz | syscalls/sample | process_vm_readv/sample |")
        print("|---|---|---|")
        print(f"| pyrometer | {p['syscalls_per_sample']:.1f} | {p['process_vm_readv_per_sample']:.1f} |")
        print(f"| py-spy --nonblocking | {s['syscalls_per_sample']:.1f} | {s['process_vm_readv_per_sample']:.1f} |")
    if "slowdown" in parts:
        for idle in (0, 50):
            runs = {tool: [] for tool in ("none", "pyrometer", "py-spy", "py-spy --nonblocking")}
            for _ in range(rounds):
                for tool in runs:
                    runs[tool].append(measure_slowdown(tool, pyspy, a.python, idle, secs))
            for tool, values in runs.items():
                result["slowdown"][f"{tool} idle {idle}"] = statistics.median(values)
        print("\n| target at 1 kHz | work rate | vs unprofiled |")
        print("|---|---|---|")
        for idle in (0, 50):
            base = result["slowdown"][f"none idle {idle}"]
            for tool in ("none", "pyrometer", "py-spy", "py-spy --nonblocking"):
                v = result["slowdown"][f"{tool} idle {idle}"]
                label = "unprofiled" if tool == "none" else tool + (" (default)" if tool == "py-spy" else "")
                print(f"| 1 busy + {idle} idle threads, {label} | {v:.0f} loops/s | {100 * v / base:.1f} % |")
    if "paired" in parts:
        pairs = 4 if a.quick else 8
        print(f"\n| one 20-frame busy thread at 1 kHz (and 50 idle ones), {pairs} on/off pairs in one process "
              "| median profiled / unprofiled | range |")
        print("|---|---|---|")
        result["paired"] = {}
        for idle in (0, 50):
            for tool in ("pyrometer", "py-spy --nonblocking"):
                ratios = measure_paired(tool, pyspy, a.python, pairs, idle=idle)
                label = tool if idle == 0 else f"{tool}, 50 idle threads"
                result["paired"][label] = ratios
                print(f"| {label} | {100 * statistics.median(ratios):.1f} % "
                      f"| {100 * min(ratios):.1f}–{100 * max(ratios):.1f} % |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
