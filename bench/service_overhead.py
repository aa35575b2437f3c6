#!/usr/bin/env python3
"""What the long-running-service features cost the sampling loop:
`record` of bench/targets/deep.py (one busy thread, 20 frames, plus 20 idle
threads) at a fixed rate, with

  base        -f pprof (the timeline on, its default)
  no-timeline -f pprof --timeline-samples 0
  write-every -f pprof --write-every 1
  pyroscope   -f pprof --pyroscope (a stand-in server on 127.0.0.1 that
              reads each push and answers 200) --pyroscope-interval 1

Configurations alternate over rounds; medians of pyrometer's CPU per
sample (its own summary), achieved rate and late ticks are printed. The
target is pinned to core 0, pyrometer to core 1.

usage: bench/service_overhead.py [--rounds N] [--seconds S] [--rate HZ]
       PYROMETER=path/to/release/pyrometer overrides target/release/pyrometer
"""
import argparse
import http.server
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYROMETER = Path(os.environ.get("PYROMETER", ROOT / "target" / "release" / "pyrometer"))
TARGET = ROOT / "bench" / "targets" / "deep.py"


class Push(http.server.BaseHTTPRequestHandler):
    pushes = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Push.pushes += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def summary_numbers(text):
    ticks = re.search(r"(\d+) ticks at ([\d.]+) Hz \(requested [\d.]+ Hz, (\d+) late", text)
    samples = re.search(r"samples: (\d+) thread samples", text)
    cpu = re.search(r"pyrometer CPU: ([\d.]+) s", text)
    if not (ticks and samples and cpu):
        raise SystemExit("cannot read pyrometer's summary:\n" + text)
    n = int(samples.group(1))
    return {
        "us_per_sample": 1e6 * float(cpu.group(1)) / max(n, 1),
        "rate": float(ticks.group(2)),
        "late": int(ticks.group(3)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--python", default=str(Path.home() / ".pyenv/versions/3.12.1/bin/python3"))
    a = ap.parse_args()
    if not PYROMETER.exists():
        raise SystemExit(f"{PYROMETER} is missing: cargo build --release (or set PYROMETER)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Push)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    target = subprocess.Popen(["taskset", "-c", "0", a.python, str(TARGET), "20", "20"],
                              stdout=subprocess.DEVNULL)
    time.sleep(1.5)
    out = Path("/tmp") / f"pyrometer-service-bench-{os.getpid()}.pb.gz"
    configs = {
        "base": [],
        "no-timeline": ["--timeline-samples", "0"],
        "write-every": ["--write-every", "1"],
        "pyroscope": ["--pyroscope", url, "--app-name", "bench", "--pyroscope-interval", "1"],
    }
    results = {k: [] for k in configs}
    try:
        for _ in range(a.rounds):
            for name, extra in configs.items():
                cmd = ["taskset", "-c", "1", str(PYROMETER), "record", "--pid", str(target.pid),
                       "-r", str(a.rate), "-d", str(a.seconds), "-f", "pprof", "-o", str(out),
                       "--quiet"] + extra
                p = subprocess.run(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   text=True, timeout=a.seconds + 60)
                if p.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr}")
                results[name].append(summary_numbers(p.stderr))
    finally:
        target.kill()
        server.shutdown()
        out.unlink(missing_ok=True)
    print(f"rate {a.rate} Hz, {a.seconds} s x {a.rounds} rounds, deep.py 20 frames + 20 idle threads;"
          f" {Push.pushes} pushes received")
    print(f"{'config':<12} {'us CPU/sample':>14} {'achieved Hz':>12} {'late ticks':>11}")
    for name, rs in results.items():
        med = lambda k: statistics.median(r[k] for r in rs)
        print(f"{name:<12} {med('us_per_sample'):>14.1f} {med('rate'):>12.1f} {med('late'):>11.0f}")


if __name__ == "__main__":
    sys.exit(main())
