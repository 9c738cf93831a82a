"""The benchmark's jobs, as plain functions: fleet and RQ import them from here.

Every job takes ``t``, the ``time.time()`` at which the benchmark enqueued it, so the job can
tell how long it waited. ``noop`` returns that wait (fleet keeps it in the ack, RQ as the
result); ``lat`` also pushes it, in milliseconds, on the Redis list ``bench:lat`` for the
latency phase; ``count_*`` variants increment the Redis counter ``bench:done`` for systems
that have no cheap way to count finished jobs (Dramatiq and Huey; see peer_dramatiq.py,
peer_huey.py). The benchmark points ``BENCH_REDIS_URL`` at its private server.
"""

from __future__ import annotations

import os
import time

import redis

DONE_KEY = "bench:done"
LATENCY_KEY = "bench:lat"

_client: redis.Redis | None = None


def client() -> redis.Redis:
    """This process's connection to the benchmark's Redis (made on first use)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client


def noop(t: float) -> float:
    """Nothing; returns how long the job waited, in seconds."""
    return time.time() - t


def sleep10(t: float) -> float:
    """Sleep 10 ms (an I/O-bound job)."""
    time.sleep(0.010)
    return time.time() - t


def lat(t: float) -> None:
    """Record enqueue→start in ms on ``bench:lat`` (the measurement is taken first)."""
    waited_ms = (time.time() - t) * 1000
    client().rpush(LATENCY_KEY, f"{waited_ms:.3f}")


def count_noop(t: float) -> None:
    """``noop`` that also counts itself done."""
    client().incr(DONE_KEY)


def count_sleep10(t: float) -> None:
    """``sleep10`` that also counts itself done."""
    time.sleep(0.010)
    client().incr(DONE_KEY)
