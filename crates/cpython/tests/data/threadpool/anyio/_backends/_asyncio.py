"""A stand-in for anyio's asyncio backend (tests only): the parts of its
thread pool that pyrometer reads from outside, with the same names and
shapes (anyio 4: `CancelScope` with `__slots__` holding `_host_task`, and
`WorkerThread.run` holding `context`, `func`, `args`, `future` and
`cancel_scope` while a call runs), so that the lookup is exercised on every
interpreter without installing anyio into each."""

import asyncio
import contextvars
import functools
import queue
import threading


class CancelScope:
    __slots__ = ("_deadline", "_host_task", "_shield")

    def __init__(self):
        self._deadline = None
        self._host_task = asyncio.current_task()
        self._shield = True


class WorkerThread(threading.Thread):
    def __init__(self, loop):
        super().__init__(name="AnyIO worker thread", daemon=True)
        self.loop = loop
        self.queue = queue.Queue(2)

    def run(self):
        while True:
            item = self.queue.get()
            if item is None:
                return
            context, func, args, future, cancel_scope = item
            result = None
            exception = None
            try:
                result = context.run(func, *args)
            except BaseException as exc:
                exception = exc
            self.loop.call_soon_threadsafe(self._report, future, result, exception)

    @staticmethod
    def _report(future, result, exception):
        if not future.cancelled():
            if exception is not None:
                future.set_exception(exception)
            else:
                future.set_result(result)


async def run_sync(worker, func, **kwargs):
    """`anyio.to_thread.run_sync` as FastAPI calls it: a partial, in a copied
    context, under a cancel scope of the awaiting task."""
    cancel_scope = CancelScope()
    future = asyncio.get_running_loop().create_future()
    context = contextvars.copy_context()
    worker.queue.put_nowait((context, functools.partial(func, **kwargs), (), future, cancel_scope))
    return await future
