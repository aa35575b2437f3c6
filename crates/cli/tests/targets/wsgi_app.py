"""A WSGI service on the standard library's wsgiref server, with a client
thread driving it, for request-attribution tests: /slow/<n> burns 50 ms of
CPU in `slow_view` (a known latency), /fast returns JSON at once. It serves
for argv[1] seconds and, when argv[2] is given, until it has served that
many /slow requests (at most 45 s: a loaded machine makes requests slower
and fewer), then prints its own measurement of the time spent in `app`
(on the last stdout line: the /slow requests' count and median, the total
for /slow and for /fast) and exits. Requests go to 127.0.0.1 only."""
import json
import sys
import threading
import time
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

SLOW_SECONDS = 0.05


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def slow_view(environ):
    start = time.perf_counter()
    while time.perf_counter() - start < SLOW_SECONDS:
        sum(range(1000))
    return b"slow"


def fast_view(environ):
    return json.dumps({"ok": True}).encode()


slow_times = []
fast_times = []


def app(environ, start_response):
    start = time.perf_counter()
    path = environ["PATH_INFO"]
    slow = path.startswith("/slow")
    body = slow_view(environ) if slow else fast_view(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    (slow_times if slow else fast_times).append(time.perf_counter() - start)
    return [body]


server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
port = server.server_port


def load():
    start = time.time()
    deadline = start + float(sys.argv[1])
    want_slow = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    i = 0
    while i < 100000 and time.time() < start + 45 and (
            time.time() < deadline or len(slow_times) < want_slow):
        path = "/slow/%d" % i if i % 2 == 0 else "/fast"
        urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path)).read()
        i += 1
    server.shutdown()


threading.Thread(target=load, name="client", daemon=True).start()
server.serve_forever()
times = sorted(slow_times)
print(json.dumps({"slow_requests": len(times),
                  "slow_p50_ms": 1000 * times[len(times) // 2] if times else None,
                  "slow_ms": 1000 * sum(slow_times),
                  "fast_ms": 1000 * sum(fast_times)}),
      flush=True)
