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

Usage: bench/soak.py [--samples N] [--interval S] [--warmup FRACTION] [--max-seconds S]
Needs: cargo build --release -p pyrometer-profile --example soak_replay

--live SECONDS instead records the example image service under gunicorn
(4 sync workers, examples/loadgen.py bounded in time and count, 127.0.0.1
only) with `pyrometer record --pid MASTER --subprocesses -r RATE -f pprof`
and samples pyrometer's own RSS and CPU time the same way; the thread
samples taken are read from its summary. Needs: cargo build --release;
scripts/webenv.sh image-service.
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


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live(a):
    import re
    import signal
    import tempfile
    import urllib.request
    venv = Path(subprocess.check_output([str(ROOT / "scripts" / "webenv.sh"), "image-service"], text=True).strip())
    pyrometer = TARGET / "release" / "pyrometer"
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = dict(os.environ, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_WORKERS="4",
                   GUNICORN_WORKER_CLASS="sync", GUNICORN_ACCESS_LOG=os.path.join(tmp, "access.log"))
        svc = subprocess.Popen([str(venv / "bin" / "gunicorn"), "-c", "gunicorn.conf.py", "app:app"],
                               cwd=ROOT / "examples" / "image-service", env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        load = prof = None
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        sys.exit("gunicorn did not answer /health within 60 s")
                    time.sleep(0.2)
            load = subprocess.Popen([sys.executable, str(ROOT / "examples" / "loadgen.py"), "--url",
                                     f"http://127.0.0.1:{port}", "--duration", str(a.live + 30),
                                     "--concurrency", str(a.concurrency), "--max-requests", "50000000",
                                     "--mix", a.mix],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            err = open(os.path.join(tmp, "pyrometer.err"), "w+")
            prof = subprocess.Popen([str(pyrometer), "record", "--pid", str(svc.pid), "--subprocesses",
                                     "-r", str(a.rate), "-f", "pprof", "-o", os.path.join(tmp, "soak.pb.gz"),
                                     "--quiet"], stdout=subprocess.DEVNULL, stderr=err)
            rows = []
            t0 = time.monotonic()
            while time.monotonic() - t0 < a.live and prof.poll() is None:
                time.sleep(a.interval)
                rows.append(dict(wall=time.monotonic() - t0, rss_kb=rss_kb(prof.pid), cpu=cpu_seconds(prof.pid)))
            prof.send_signal(signal.SIGINT)
            prof.wait(timeout=120)
            err.seek(0)
            summary = err.read()
        finally:
            for p in (load, prof):
                if p and p.poll() is None:
                    p.kill()
            os.killpg(svc.pid, signal.SIGTERM)
            svc.wait()
    m = re.search(r"samples: (\d+) thread samples", summary)
    samples = int(m.group(1)) if m else 0
    print(summary)
    print("| wall s | RSS MB | CPU s |")
    print("|---|---|---|")
    step = max(1, len(rows) // 20)
    for i, r in enumerate(rows):
        if i % step == 0 or i == len(rows) - 1:
            print(f"| {r['wall']:.0f} | {r['rss_kb'] / 1024:.1f} | {r['cpu']:.1f} |")
    if len(rows) >= 3 and samples:
        warm = rows[max(1, int(len(rows) * a.warmup))]
        end = rows[-1]
        per_s = samples / end["wall"]
        dm = per_s * (end["wall"] - warm["wall"]) / 1e6
        print(f"\nthread samples: {samples:,} ({per_s:,.0f}/s achieved; {samples / 3.6e6:.2f} h of one thread at 1 kHz)")
        print(f"RSS after warm-up ({warm['wall']:.0f} s): {warm['rss_kb'] / 1024:.1f} MB; at the end: "
              f"{end['rss_kb'] / 1024:.1f} MB; growth {(end['rss_kb'] - warm['rss_kb']) / max(dm, 1e-9):.1f} KB "
              f"per million samples (samples assumed evenly spread)")
        print(f"CPU: {end['cpu'] * 1e6 / samples:.2f} µs per thread sample over the run")


def end_samples(rows):
    return rows[-1]["samples"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=86_400_000 * THREADS)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--max-seconds", type=float, default=0,
                    help="stop the replay after this long (0: run to --samples) and report what was reached")
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of samples that is warm-up")
    ap.add_argument("--live", type=float, default=0, help="record gunicorn live for this many seconds")
    ap.add_argument("--rate", type=int, default=20000, help="sampling rate of --live")
    ap.add_argument("--concurrency", type=int, default=4, help="load generator clients of --live")
    ap.add_argument("--mix", default="process:blur=2,process:edges=1,health=5",
                    help="load generator's endpoint mix of --live")
    a = ap.parse_args()
    if a.live:
        return live(a)
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
