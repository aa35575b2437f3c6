"""A fixed amount of allocation-heavy work, web-service-like: build request
dicts, encode and decode JSON, join strings, fill and drop byte buffers.
Prints the seconds the work took (startup excluded), then "cpu S": the
CPU seconds this process spent on it (steadier than wall time on a loaded
machine; with nothing waiting in the target, a profiler's cost to it is CPU). Pins itself to core 0
so a profiler launching it on another core does not share its CPU."""
import json
import os
import sys
import time

if hasattr(os, "sched_setaffinity"):
    try:
        os.sched_setaffinity(0, {0})
    except OSError:
        pass

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20000


def handle(i):
    request = {"id": i, "user": "user%d" % (i % 100), "items": [{"sku": j, "qty": j % 7} for j in range(20)]}
    body = json.dumps(request)
    parsed = json.loads(body)
    lines = ["%s=%s" % (k, v) for k, v in parsed.items()]
    buf = bytearray(4096 + (i % 16) * 1024)
    return len("&".join(lines)) + len(buf)


start = time.perf_counter()
cpu_start = time.process_time()
total = 0
for i in range(rounds):
    total += handle(i)
print("%.4f" % (time.perf_counter() - start), flush=True)
print("cpu %.4f" % (time.process_time() - cpu_start), flush=True)
