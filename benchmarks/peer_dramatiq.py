"""Dramatiq actors for the benchmark (``dramatiq peer_dramatiq -p 2 -t 4``).

Completion is counted with the Redis counter ``bench:done`` that each actor increments (one
INCR per job, on the worker's side), not with a result backend: a result backend would add a
SET per job plus polling per message id on the benchmark's side.
"""

from __future__ import annotations

import os

import dramatiq
import peer_tasks
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"], namespace="bench-dramatiq")
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0, queue_name="default")
def noop(t: float) -> None:
    peer_tasks.count_noop(t)


@dramatiq.actor(max_retries=0, queue_name="default")
def sleep10(t: float) -> None:
    peer_tasks.count_sleep10(t)


@dramatiq.actor(max_retries=0, queue_name="default")
def lat(t: float) -> None:
    peer_tasks.lat(t)
