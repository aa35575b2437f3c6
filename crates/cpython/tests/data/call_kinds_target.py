"""One thread parked under each way Python code calls Python code: plain,
keyword and star calls, methods, super(), properties, __getattribute__,
__getitem__, __init__, generators (for, yield from, send), coroutines
(await), calls from C (sorted's key, map), throw() into generators and
coroutines that delegate (their frames linked from C without an entry
frame). Each path is run a few times first so the interpreter specializes
it (3.11+ then pushes the callee's frame inline), then once more to park in
`leaf`.

With the argument `traced`, only a thread traced with sys.settrace (3.12+:
every code object run after it is instrumented) and a plain one.

Prints one JSON line, {"threads": {ident: {"path": name, "frames": [co_name,
innermost first]}}}, from sys._current_frames(), then sleeps until killed.
"""
import json
import sys
import threading
import time

PARK = threading.Event()
parked = []
lock = threading.Lock()


def leaf():
    if PARK.is_set():
        with lock:
            parked.append(threading.get_ident())
        time.sleep(3600)
    return 1


def plain():
    return leaf()


def keyword(x=0, y=0):
    return leaf()


def by_keyword():
    return keyword(x=1, y=2)


def starred(*args, **kwargs):
    return leaf()


def by_star():
    args, kwargs = (1, 2), {"z": 3}
    return starred(*args, **kwargs)


class Base:
    def method(self):
        return leaf()


class Child(Base):
    def method(self):
        return super().method()

    @property
    def prop(self):
        return leaf()

    def __getitem__(self, key):
        return leaf()


class Attrs:
    def __getattribute__(self, name):
        return leaf()


class Init:
    def __init__(self):
        leaf()


def by_method():
    return Child().method()


def by_property():
    return Child().prop


def by_getitem():
    return Child()[0]


def by_getattribute():
    return Attrs().anything


def by_init():
    return Init()


def gen():
    yield leaf()


def by_for():
    for x in gen():
        return x


def delegating():
    yield from gen()


def by_yield_from():
    for x in delegating():
        return x


async def inner():
    return leaf()


async def outer():
    return await inner()


def by_await():
    coro = outer()
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value


def by_c_callback():
    return sorted([2, 1], key=lambda v: leaf())


def by_map():
    return list(map(lambda v: leaf(), [1]))


def handling_gen():
    try:
        yield 1
    except ValueError:
        leaf()
        yield 2


def delegating_once():
    yield from handling_gen()


def delegating_twice():
    yield from delegating_once()


def by_throw():
    g = delegating_once()
    next(g)
    return g.throw(ValueError)


def by_nested_throw():
    g = delegating_twice()
    next(g)
    return g.throw(ValueError)


class Suspend:
    def __await__(self):
        yield


async def handling_coro():
    try:
        await Suspend()
    except ValueError:
        leaf()


async def awaiting_coro():
    await handling_coro()


def by_coro_throw():
    coro = awaiting_coro()
    coro.send(None)
    try:
        coro.throw(ValueError)
    except StopIteration:
        pass


def tracer(frame, event, arg):
    return tracer


def traced_leaf_caller():
    return leaf()


def by_traced():
    sys.settrace(tracer)
    return traced_leaf_caller()


PATHS = [
    plain, by_keyword, by_star, by_method, by_property, by_getitem,
    by_getattribute, by_init, by_for, by_yield_from, by_await,
    by_c_callback, by_map, by_throw, by_nested_throw, by_coro_throw,
]
if sys.argv[1:] == ["traced"]:
    PATHS = [plain, by_traced]


def run(path):
    for _ in range(50):
        path()
    warmed.wait()
    ready.wait()
    path()


warmed = threading.Barrier(len(PATHS) + 1)
ready = threading.Event()
threads = [threading.Thread(target=run, args=(p,), name=p.__name__, daemon=True) for p in PATHS]
for t in threads:
    t.start()
warmed.wait()
PARK.set()
ready.set()
deadline = time.monotonic() + 30
while len(parked) < len(threads) and time.monotonic() < deadline:
    time.sleep(0.01)
# Let each parked thread reach the sleep itself.
time.sleep(0.2)
frames = sys._current_frames()
out = {}
for t in threads:
    f = frames.get(t.ident)
    names = []
    while f is not None:
        code = f.f_code
        names.append(code.co_name)
        f = f.f_back
    out[str(t.ident)] = {"path": t.name, "frames": names}
print(json.dumps({"threads": out, "parked": len(parked)}), flush=True)
time.sleep(3600)
