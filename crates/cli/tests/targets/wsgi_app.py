"""A WSGI service on the standard library's wsgiref server, with a client
thread driving it, for request-attribution tests: /slow/<n> burns 50 ms of
CPU in `slow_view` (a known latency), /fast returns JSON at once. It serves
for argv[1] seconds, then exits. Requests go to 127.0.0.1 only."""
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


def app(environ, start_response):
    path = environ["PATH_INFO"]
    body = slow_view(environ) if path.startswith("/slow") else fast_view(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
port = server.server_port


def load():
    deadline = time.time() + float(sys.argv[1])
    i = 0
    while time.time() < deadline and i < 100000:
        path = "/slow/%d" % i if i % 2 == 0 else "/fast"
        urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path)).read()
        i += 1
    server.shutdown()


threading.Thread(target=load, name="client", daemon=True).start()
server.serve_forever()
