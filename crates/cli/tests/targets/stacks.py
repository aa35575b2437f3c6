"""Target of crates/cli/tests/dump.rs: one thread per kind of frame, each
parked at a line marked with a tag comment, then one JSON line describing every thread's
stack as CPython sees it (see _truth.py), then it blocks until killed.

Threads:
  MainThread  nested calls through methods; int, str and list locals
  worker-α    a generator being iterated, parked in threading.Event.wait
  asyncio     a running coroutine blocked by a blocking call inside it
  lambda      a lambda running a list comprehension (inlined on 3.12+)
  static      a staticmethod calling a classmethod
  closure     a method whose `self` is captured by a closure
  deep        a 2000-deep recursion
  busy        a thread spinning on one line (holds the GIL, on a CPU)
  reporter    prints the JSON line, then sleeps
"""
import asyncio
import sys
import threading
import time

import _truth

HERE = _truth.markers(__file__)
DEPTH = 2000
FOREVER = 3600 * 24
started = threading.Event()


# --- MainThread: nested calls through methods -------------------------------
class Shop:
    def __init__(self, items):
        self.items = items

    def checkout(self, customer):
        return self._total(customer) + 1  # @main-checkout

    def _total(self, customer):
        return apply_tax(len(self.items), customer)  # @main-total


def apply_tax(count, customer):
    label = customer + " wörld"
    items = [1, 2, 3]
    count = count * 14
    time.sleep(FOREVER)  # @main-block
    return count, label, items


# --- worker-α: a generator being iterated ------------------------------------
def ticker(n):
    for i in range(n):
        if i == 2:
            threading.Event().wait()  # @gen-block
        yield i


def consume():
    total = 0
    for value in ticker(5):  # @gen-iter
        total += value
    return total


# --- asyncio: a coroutine blocked by a blocking call -------------------------
async def fetch(delay):
    await asyncio.sleep(0)
    time.sleep(delay)  # @coro-block
    return delay


async def gather_all():
    return await fetch(FOREVER)  # @coro-await


def run_loop():
    asyncio.run(gather_all())  # @coro-run


# --- lambda: a lambda running a list comprehension ---------------------------
def slow(x):
    time.sleep(FOREVER)  # @lambda-block
    return x


spread = lambda xs: [  # @lambda-def
    slow(x)  # @lambda-comp
    for x in xs
]


def run_lambda():
    return spread([1, 2])  # @lambda-call


# --- static: staticmethod -> classmethod -------------------------------------
class Tools:
    @staticmethod
    def helper(n):
        return Tools.build(n)  # @static-call

    @classmethod
    def build(cls, n):
        time.sleep(FOREVER)  # @class-block
        return cls, n


# --- closure: `self` captured by a lambda ------------------------------------
class Holder:
    def __init__(self):
        self.value = 7

    def hold(self):
        get = lambda: self.value
        time.sleep(FOREVER)  # @closure-block
        return get()


# --- deep: recursion ---------------------------------------------------------
def dive(n):
    if n == 0:
        time.sleep(FOREVER)  # @deep-block
        return 0
    return dive(n - 1) + 1  # @deep-call


# --- busy: one line, on a CPU ------------------------------------------------
def spin():
    n = 0
    while True: n += 1  # @busy-line  # noqa: E701


def main():
    sys.setrecursionlimit(DEPTH * 5)
    threads = {}

    def start(name, target, func, tag, blocked=True, stack_size=0):
        if stack_size:
            threading.stack_size(stack_size)
        t = threading.Thread(name=name, target=target, daemon=True)
        t.start()
        if stack_size:
            threading.stack_size(0)
        threads[t] = (func, HERE[tag], blocked)
        return t

    start("worker-α", consume, "ticker", "gen-block")
    start("asyncio", run_loop, "fetch", "coro-block")
    start("lambda", run_lambda, "slow", "lambda-block")
    start("static", lambda: Tools.helper(3), "build", "class-block")
    start("closure", lambda: Holder().hold(), "hold", "closure-block")
    start("deep", lambda: dive(DEPTH), "dive", "deep-block", stack_size=256 << 20)
    start("busy", spin, "spin", "busy-line", blocked=False)
    main_thread = threading.main_thread()
    threads[main_thread] = ("apply_tax", HERE["main-block"], True)

    def report():
        snap = _truth.wait_parked(threads)
        docs = [_truth.thread_doc(t, snap[t], threads[t][2]) for t in threads]
        me = threading.current_thread()
        docs.append(_truth.thread_doc(me, _truth.self_stack(HERE["reporter-block"]), True))
        _truth.emit({
            "markers": HERE,
            "threads": docs,
            "locals": {
                "thread": "MainThread",
                "function": "apply_tax",
                "values": {"count": repr(3 * 14), "label": repr("héllo wörld"),
                           "items": repr([1, 2, 3]), "customer": repr("héllo")},
            },
        })
        time.sleep(FOREVER)  # @reporter-block

    threading.Thread(name="reporter", target=report, daemon=True).start()
    Shop(["a", "b", "c"]).checkout("héllo")  # @main-call


if __name__ == "__main__":
    main()  # @module-call
