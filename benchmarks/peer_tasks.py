"""The benchmark's jobs, as plain functions: fleet and RQ import them from here, Huey's,
Dramatiq's and Celery's wrappers call them (peer_huey.py, peer_dramatiq.py, peer_celery.py).
arq runs only coroutines, so its wrappers (peer_arq.py) await the ``a``-prefixed twins below:
the same Redis command on redis-py's asyncio client, ``asyncio.sleep`` for the 10 ms wait.

Every system runs the same bodies, so the drain rates compare like with like: ``incr`` is one
``INCR`` of the Redis counter ``bench:done`` and nothing else, ``incr_sleep10`` sleeps 10 ms
first (an I/O-bound job); the benchmark times both to the counter reaching N, for every
system. ``lat`` pushes how long it waited from enqueue to start, in milliseconds, on the list
``bench:lat``. ``noop`` touches nothing: it is only for fleet's separately labelled pure no-op
row, timed to fleet's own record. Every job takes ``t``, the ``time.time()`` at which the
benchmark enqueued it. The benchmark points ``BENCH_REDIS_URL`` at its private server.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis
import redis.asyncio

DONE_KEY = "bench:done"
LATENCY_KEY = "bench:lat"

_client: redis.Redis | None = None
_aclient: redis.asyncio.Redis | None = None


def client() -> redis.Redis:
    """This process's connection to the benchmark's Redis (made on first use)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client


def done_count(r: redis.Redis) -> int:
    """How many ``incr`` and ``incr_sleep10`` jobs have run so far."""
    return int(r.get(DONE_KEY) or 0)


def incr(t: float) -> None:
    """The like-for-like job: one INCR of the counter."""
    client().incr(DONE_KEY)


def incr_sleep10(t: float) -> None:
    """Sleep 10 ms, then ``incr``."""
    time.sleep(0.010)
    client().incr(DONE_KEY)


def lat(t: float) -> None:
    """Record enqueue→start in ms on ``bench:lat`` (the measurement is taken first)."""
    waited_ms = (time.time() - t) * 1000
    client().rpush(LATENCY_KEY, f"{waited_ms:.3f}")


def noop(t: float) -> None:
    """Nothing at all (fleet's pure no-op row only)."""


def aclient() -> redis.asyncio.Redis:
    """This process's asyncio connection pool to the benchmark's Redis (made on first use)."""
    global _aclient
    if _aclient is None:
        _aclient = redis.asyncio.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _aclient


async def aincr(t: float) -> None:
    """``incr`` for an asyncio worker: one INCR of the counter."""
    await aclient().incr(DONE_KEY)


async def aincr_sleep10(t: float) -> None:
    """``incr_sleep10`` for an asyncio worker: 10 ms without blocking the loop, then INCR."""
    await asyncio.sleep(0.010)
    await aclient().incr(DONE_KEY)


async def alat(t: float) -> None:
    """``lat`` for an asyncio worker."""
    waited_ms = (time.time() - t) * 1000
    await aclient().rpush(LATENCY_KEY, f"{waited_ms:.3f}")
