"""Dramatiq actors for the benchmark (``dramatiq peer_dramatiq -p 2 -t 4``).

Each actor calls the shared body in peer_tasks.py. No result backend: it would add a SET per
job, and the benchmark times every system to the same counter instead.
"""

from __future__ import annotations

import os

import dramatiq
import peer_tasks
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"], namespace="bench-dramatiq")
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0, queue_name="default")
def incr(t: float) -> None:
    peer_tasks.incr(t)


@dramatiq.actor(max_retries=0, queue_name="default")
def incr_sleep10(t: float) -> None:
    peer_tasks.incr_sleep10(t)


@dramatiq.actor(max_retries=0, queue_name="default")
def lat(t: float) -> None:
    peer_tasks.lat(t)
