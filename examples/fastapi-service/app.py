"""A FastAPI service with the three kinds of endpoint a profile of an ASGI
app has to tell apart. Run from this directory:

    uvicorn app:app --workers 2 --host 127.0.0.1 --port 8000

    GET  /health    "ok"
    POST /compute   JSON {"n": INT}: CPU-bound pure Python (count the primes
                    below n), run right in an `async def` endpoint, so it
                    blocks that worker's event loop while it runs
    GET  /sleep     `async def` awaiting asyncio.sleep (the loop stays free)
    GET  /sync      a plain `def` endpoint, which FastAPI runs in its
                    threadpool: a little blocking I/O and a little CPU
    GET  /burn      ?n=INT: a plain `def` endpoint that is all CPU (the
                    primes below n), in the threadpool
"""

import asyncio
import os
import time

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

app = FastAPI(title="pyrometer fastapi example")

MAX_N = 2_000_000


class ComputeRequest(BaseModel):
    n: int = 60_000


def count_primes(n):
    """Trial division, on purpose: slow, pure Python."""
    count = 0
    for candidate in range(2, n):
        d = 2
        while d * d <= candidate:
            if candidate % d == 0:
                break
            d += 1
        else:
            count += 1
    return count


@app.get("/health")
async def health():
    return {"status": "ok", "pid": os.getpid()}


@app.post("/compute")
async def compute(req: ComputeRequest):
    if not 2 <= req.n <= MAX_N:
        raise HTTPException(status_code=400, detail=f"n must be in 2..{MAX_N}")
    t0 = time.perf_counter()
    primes = count_primes(req.n)
    return {"n": req.n, "primes": primes, "ms": round((time.perf_counter() - t0) * 1000, 1)}


@app.get("/sleep")
async def sleep(ms: int = 50):
    await asyncio.sleep(min(max(ms, 0), 5000) / 1000)
    return {"slept_ms": ms}


def checksum(data):
    total = 0
    for i, b in enumerate(data):
        total = (total * 31 + b + i) & 0xFFFFFFFF
    return total


@app.get("/sync")
def sync_endpoint(ms: int = 20):
    time.sleep(min(max(ms, 0), 5000) / 1000)  # a blocking call, in the threadpool
    return {"checksum": checksum(os.urandom(20_000))}


@app.get("/burn")
def sync_burn(n: int = 30_000):
    if not 2 <= n <= MAX_N:
        raise HTTPException(status_code=400, detail=f"n must be in 2..{MAX_N}")
    return {"n": n, "primes": count_primes(n)}
