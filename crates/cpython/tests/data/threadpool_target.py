"""Sync endpoints running in an anyio-style thread pool (see
threadpool/anyio/_backends/_asyncio.py), for crates/cpython/tests/threadpool_live.rs.

Four worker threads: one runs a call awaited by a task whose coroutine is
a method with the request in `self.scope` (uvicorn's RequestResponseCycle),
one a call awaited by a coroutine with a `scope` local (a plain ASGI app),
one the same under asyncio's pure-Python task class, one under a Python
subclass of the C task, one waits for work. Prints one JSON line with their thread idents, then
runs for 120 s (the test kills it sooner)."""

import asyncio
import json
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "threadpool"))
from anyio._backends._asyncio import WorkerThread, run_sync  # noqa: E402

release = threading.Event()
started = {}


def sync_view(label, n=0):
    started[label] = threading.get_ident()
    release.wait(120)
    return n


class SubTask(asyncio.Task):
    """A task class of an application's own (asyncio.Task is the C one)."""


class Cycle:
    def __init__(self, scope, worker):
        self.scope = scope
        self.worker = worker

    async def run_asgi(self):
        return await run_sync(self.worker, sync_view, label="cycle", n=1)


async def asgi_app(scope, worker, label="app"):
    return await run_sync(worker, sync_view, label=label, n=2)


async def main():
    loop = asyncio.get_running_loop()
    workers = [WorkerThread(loop) for _ in range(5)]
    for w in workers:
        w.start()
    scope_a = {"type": "http", "method": "PATCH", "path": "/items/42", "headers": []}
    scope_b = {"type": "http", "method": "DELETE", "path": "/orders/7"}
    t1 = loop.create_task(Cycle(scope_a, workers[0]).run_asgi())
    t2 = loop.create_task(asgi_app(scope_b, workers[1]))
    scope_c = {"type": "http", "method": "PUT", "path": "/py/1"}
    t3 = asyncio.tasks._PyTask(asgi_app(scope_c, workers[3], "pytask"), loop=loop)
    scope_d = {"type": "http", "method": "POST", "path": "/sub/2"}
    t4 = SubTask(asgi_app(scope_d, workers[4], "subtask"), loop=loop)
    while len(started) < 4:
        await asyncio.sleep(0.01)
    print(
        json.dumps(
            {
                "cycle": started["cycle"],
                "app": started["app"],
                "pytask": started["pytask"],
                "subtask": started["subtask"],
                "idle": workers[2].ident,
            }
        ),
        flush=True,
    )
    await asyncio.sleep(120)
    release.set()
    await asyncio.gather(t1, t2, t3, t4)


asyncio.run(main())
