"""Target for tests/fuzz_walker.rs: parks a few threads whose stacks hold
everything pyrometer reads (methods with `self`/`cls`, a closure over `self`,
a generator, a WSGI `environ` and an ASGI `scope`, locals of every type the
renderer knows), prints one "ready" JSON line, then sleeps until killed.

The test snapshots the memory a real walk reads into an image and mutates it.
"""
import json
import sys
import threading
import time

parked = threading.Barrier(4)
release = threading.Event()


class Plain:
    def __init__(self):
        self.alpha = 1
        self.beta = "two"
        self.gamma = [3, 4.5]


def park():
    parked.wait()
    release.wait()


def wsgi_view(environ, start_response):
    body = b"ok \x00\xff"
    status = "200 OK"
    park()
    return [body, status]


def asgi_app(scope, receive=None, send=None):
    headers = [(b"host", b"127.0.0.1")]
    park()
    return headers


def items_gen(items):
    for i in items:
        if i == 1:
            park()  # parks inside a generator frame
        yield i


class Worker:
    def run(self, items):
        small, big, negative = 7, 3 ** 200, -(2 ** 70)
        ratio = 2.5
        text = ("ascii", "latin-\xe9", "ucs2-\u0394", "ucs4-\U0001f600")
        mapping = {"k": 1, 2: "v", (3,): None, "nested": {"deep": [1, (2,)]}}
        flags = (True, False, None)
        obj = Plain()
        gen = items_gen(items)
        next(gen)
        return self.helper(gen, small, big, negative, ratio, text, mapping, flags, obj)

    def helper(self, gen, *rest):
        def closure():
            return self
        for _ in gen:
            pass
        return closure, rest

    @classmethod
    def build(cls, n):
        return cls().run(list(range(n)))


def main():
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/process/123",
        "QUERY_STRING": "a=1",
        "wsgi.version": (1, 0),
    }
    scope = {"type": "http", "method": "GET", "path": "/users/42", "headers": []}
    threads = [
        threading.Thread(target=wsgi_view, args=(environ, None), name="wsgi-worker"),
        threading.Thread(target=asgi_app, args=(scope,), name="asgi-worker"),
        threading.Thread(target=Worker.build, args=(5,), name="méthod-wörker"),
    ]
    for t in threads:
        t.start()
    parked.wait()
    # The barrier's last waiter may not have reached Event.wait yet: give
    # every thread a moment to park (the test snapshots what it reads, so a
    # thread still moving only changes which frames are captured).
    time.sleep(0.2)
    print(json.dumps({"ready": True, "version": list(sys.version_info[:3])}), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
