#!/usr/bin/env python3
"""A bounded load generator for the example web services (stdlib only).

    python3 examples/loadgen.py --url http://127.0.0.1:8000 --duration 15 \\
        --concurrency 8 --mix process:blur=3,process:noise_reduction=1,health=5

It sends requests from --concurrency threads for --duration seconds (and at
most --max-requests in all), then prints, per endpoint, how many requests
were made, how many failed, the status codes and the latencies. It only
talks to this machine: the URL's host must be localhost or a loopback
address, anything else is refused.

The mix is a comma-separated list of ENDPOINT=WEIGHT:

    process:OP      POST /process, multipart: a generated PNG as `image`, and
                    `op` (image-service: blur, sharpen, edges, grayscale,
                    thumbnail, noise_reduction)
    get:/PATH       GET /PATH (a query string is allowed)
    post:/PATH      POST /PATH with the JSON document --body
    NAME            GET /NAME (so `health` is GET /health)

The images are made at start-up (a gradient with noise, encoded as PNG
with zlib; no image files are needed). --save-image FILE writes one and
exits, for trying the service by hand:

    python3 examples/loadgen.py --save-image /tmp/x.png
    curl -F image=@/tmp/x.png -F op=edges http://127.0.0.1:8000/process -o out.png

--wait SECONDS first waits (bounded) until GET /health answers 200; with
--duration 0 that is all it does. Exit status: 0 when at least one request
succeeded (or, with --duration 0, the service answered), 1 otherwise, 2 for
a bad command line.
"""

import argparse
import http.client
import ipaddress
import json
import random
import signal
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import zlib

MAX_DURATION = 3600.0
MAX_CONCURRENCY = 64


# --------------------------------------------------------------------------
# Images


def png_bytes(width, height, seed):
    """An RGB PNG: diagonal gradients with random speckles (so that a median
    filter has real noise to remove and the PNG does not compress to nothing)."""
    rng = random.Random(seed)
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            r = (x * 255 // max(width - 1, 1) + seed * 40) & 0xFF
            g = (y * 255 // max(height - 1, 1)) & 0xFF
            b = ((x + y) * 2 + seed * 17) & 0xFF
            if rng.random() < 0.08:
                r, g, b = rng.randrange(256), rng.randrange(256), rng.randrange(256)
            rows += bytes((r, g, b))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 6))
        + chunk(b"IEND", b"")
    )


def multipart(fields, files):
    """(body, content type) of a multipart/form-data document."""
    boundary = "----loadgen" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, (filename, ctype, data) in files.items():
        parts.append(
            (
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# --------------------------------------------------------------------------
# Command line


class Endpoint:
    def __init__(self, key, method, path, op=None):
        self.key, self.method, self.path, self.op = key, method, path, op


def parse_mix(text):
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, weight = item.rpartition("=")
        if not sep or not key:
            raise ValueError(f"mix entry {item!r} is not ENDPOINT=WEIGHT")
        try:
            w = float(weight)
        except ValueError:
            raise ValueError(f"mix entry {item!r}: weight {weight!r} is not a number") from None
        if not 0 <= w <= 1e6:
            raise ValueError(f"mix entry {item!r}: weight out of range")
        if key.startswith("process:"):
            ep = Endpoint(key, "POST", "/process", op=key.split(":", 1)[1])
        elif key.startswith("get:") or key.startswith("post:"):
            method, path = key.split(":", 1)
            if not path.startswith("/"):
                raise ValueError(f"mix entry {item!r}: the path must start with /")
            ep = Endpoint(key, method.upper(), path)
        else:
            ep = Endpoint(key, "GET", "/" + key.lstrip("/"))
        out.append((ep, w))
    if not out or sum(w for _, w in out) <= 0:
        raise ValueError("the mix has no endpoint with a positive weight")
    return out


def local_target(url):
    """(host, port, base path) of a localhost URL; ValueError for anything else."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        raise ValueError(f"{url}: only http:// URLs are supported")
    host = u.hostname or ""
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{url}: refusing host {host!r}: loadgen only sends requests to "
                "localhost or a loopback address (127.0.0.0/8, ::1)"
            ) from None
    return host, u.port or 80, u.path.rstrip("/")


# --------------------------------------------------------------------------
# Load


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = {}  # key -> [seconds] of successful requests
        self.errors = {}  # key -> count
        self.statuses = {}  # key -> {status: count}
        self.error_kinds = {}  # "ExceptionName: text" -> count
        self.sent = 0

    def take_ticket(self, max_requests):
        with self.lock:
            if self.sent >= max_requests:
                return False
            self.sent += 1
            return True

    def record(self, key, status, seconds, error=None):
        with self.lock:
            if status is not None:
                per = self.statuses.setdefault(key, {})
                per[status] = per.get(status, 0) + 1
            if error is None and status is not None and 200 <= status < 400:
                self.latencies.setdefault(key, []).append(seconds)
            else:
                self.errors[key] = self.errors.get(key, 0) + 1
                if error is not None:
                    self.error_kinds[error] = self.error_kinds.get(error, 0) + 1


def worker(idx, args, target, mix, images, stats, stop, deadline):
    host, port, base = target
    rng = random.Random(args.seed * 1000 + idx)
    endpoints = [ep for ep, _ in mix]
    weights = [w for _, w in mix]
    conn = None
    while not stop.is_set() and time.monotonic() < deadline:
        if not stats.take_ticket(args.max_requests):
            break
        ep = rng.choices(endpoints, weights)[0]
        headers = {"User-Agent": "pyrometer-loadgen"}
        if args.close:
            headers["Connection"] = "close"
        body = None
        if ep.op is not None:
            body, ctype = multipart(
                {"op": ep.op}, {"image": ("image.png", "image/png", rng.choice(images))}
            )
            headers["Content-Type"] = ctype
        elif ep.method == "POST":
            body = args.body.encode()
            headers["Content-Type"] = "application/json"
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
            conn.request(ep.method, base + ep.path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            stats.record(ep.key, resp.status, time.perf_counter() - t0)
            if resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as e:
            stats.record(ep.key, None, time.perf_counter() - t0, f"{type(e).__name__}: {e}")
            if conn is not None:
                conn.close()
                conn = None
            # Do not spin on a dead server.
            stop.wait(0.05)
    if conn is not None:
        conn.close()


def wait_healthy(target, seconds):
    host, port, base = target
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", base + "/health")
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return True, "ok"
            last = f"status {resp.status}"
        except (OSError, http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.2)
    return False, last


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def summary(stats, mix, elapsed):
    rows = []
    for ep, _ in mix:
        lat = sorted(stats.latencies.get(ep.key, []))
        rows.append(
            {
                "endpoint": ep.key,
                "ok": len(lat),
                "errors": stats.errors.get(ep.key, 0),
                "statuses": {str(k): v for k, v in sorted(stats.statuses.get(ep.key, {}).items())},
                "p50_ms": round(percentile(lat, 0.5) * 1000, 1) if lat else None,
                "p90_ms": round(percentile(lat, 0.9) * 1000, 1) if lat else None,
                "p99_ms": round(percentile(lat, 0.99) * 1000, 1) if lat else None,
                "max_ms": round(lat[-1] * 1000, 1) if lat else None,
            }
        )
    ok = sum(r["ok"] for r in rows)
    errors = sum(r["errors"] for r in rows)
    return {
        "seconds": round(elapsed, 2),
        "requests": ok + errors,
        "ok": ok,
        "errors": errors,
        "rps": round((ok + errors) / elapsed, 1) if elapsed > 0 else 0.0,
        "endpoints": rows,
        "error_kinds": dict(sorted(stats.error_kinds.items(), key=lambda kv: -kv[1])[:10]),
    }


def print_table(doc, out):
    def ms(v):
        return "-" if v is None else f"{v:.1f}"

    print(
        f"loadgen: {doc['requests']} requests in {doc['seconds']} s "
        f"({doc['rps']} req/s), {doc['ok']} ok, {doc['errors']} failed",
        file=out,
    )
    print(
        f"  {'endpoint':<28} {'ok':>7} {'failed':>7} {'p50 ms':>9} {'p90 ms':>9} "
        f"{'p99 ms':>9} {'max ms':>9}  statuses",
        file=out,
    )
    for r in doc["endpoints"]:
        statuses = " ".join(f"{k}:{v}" for k, v in r["statuses"].items())
        print(
            f"  {r['endpoint']:<28} {r['ok']:>7} {r['errors']:>7} {ms(r['p50_ms']):>9} "
            f"{ms(r['p90_ms']):>9} {ms(r['p99_ms']):>9} {ms(r['max_ms']):>9}  {statuses}",
            file=out,
        )
    for kind, n in doc["error_kinds"].items():
        print(f"  error x{n}: {kind}", file=out)


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Bounded HTTP load for the example services (localhost only).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", default="http://127.0.0.1:8000", help="base URL (localhost only)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load (0: none)")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent clients")
    p.add_argument(
        "--mix",
        default="process:blur=3,process:noise_reduction=1,health=5",
        help="ENDPOINT=WEIGHT,... (see the module's help)",
    )
    p.add_argument("--max-requests", type=int, default=100_000, help="stop after this many")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--body", default="{}", help="JSON body of post:/PATH requests")
    p.add_argument("--image-size", type=int, default=96, help="width and height of the images")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--close",
        action="store_true",
        help="a new connection per request (keep-alive connections stick to one worker)",
    )
    p.add_argument("--wait", type=float, default=0.0, help="first wait this long for /health")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    p.add_argument("--save-image", metavar="FILE", help="write a generated PNG and exit")
    args = p.parse_args(argv)

    if args.save_image:
        with open(args.save_image, "wb") as f:
            f.write(png_bytes(args.image_size, args.image_size, args.seed))
        print(f"loadgen: wrote {args.save_image}", file=sys.stderr)
        return 0
    try:
        target = local_target(args.url)
        mix = parse_mix(args.mix)
        json.loads(args.body)
    except ValueError as e:
        p.error(str(e))
    if not 0 <= args.duration <= MAX_DURATION:
        p.error(f"--duration must be in 0..{MAX_DURATION:g}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        p.error(f"--concurrency must be in 1..{MAX_CONCURRENCY}")
    if not 8 <= args.image_size <= 1024:
        p.error("--image-size must be in 8..1024")
    if args.max_requests < 1 or not 0 < args.timeout <= 300 or not 0 <= args.wait <= 600:
        p.error("--max-requests, --timeout or --wait out of range")

    if args.wait > 0:
        ok, why = wait_healthy(target, args.wait)
        if not ok:
            print(f"loadgen: {args.url}/health did not answer 200 within {args.wait:g} s ({why})",
                  file=sys.stderr)
            return 1
        if args.duration == 0:
            return 0
    if args.duration == 0:
        return 0

    images = []
    if any(ep.op is not None for ep, _ in mix):
        images = [png_bytes(args.image_size, args.image_size, s) for s in range(3)]

    stats = Stats()
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t0 = time.monotonic()
    deadline = t0 + args.duration
    threads = [
        threading.Thread(
            target=worker,
            args=(i, args, target, mix, images, stats, stop, deadline),
            name=f"client-{i}",
            daemon=True,
        )
        for i in range(args.concurrency)
    ]
    for t in threads:
        t.start()
    # Bounded: every request has its own timeout; give stragglers that long.
    hard_stop = deadline + args.timeout + 1
    for t in threads:
        while t.is_alive() and not stop.is_set() and time.monotonic() < hard_stop:
            t.join(0.2)
    stop.set()
    for t in threads:
        t.join(max(0.0, min(2.0, hard_stop - time.monotonic())))
    doc = summary(stats, mix, time.monotonic() - t0)
    if args.json:
        print(json.dumps(doc), flush=True)
    else:
        print_table(doc, sys.stdout)
    return 0 if doc["ok"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
