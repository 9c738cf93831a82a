"""Celery tasks for the benchmark (``celery -A peer_celery worker -P prefork -c 8``).

Redis broker, ``acks_late=True`` (a task is acknowledged after it ran, so a worker killed
mid-task hands it back: the closest to fleet's per-job ack), ``worker_prefetch_multiplier`` at
its default of 4 (the consumer holds up to 4 × 8 unacknowledged messages). Each task calls the
shared body in peer_tasks.py and keeps no result (no result backend), like Huey and Dramatiq
here.
"""

from __future__ import annotations

import os

import peer_tasks
from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(task_acks_late=True, task_ignore_result=True, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True)


@app.task(name="bench.incr")
def incr(t: float) -> None:
    peer_tasks.incr(t)


@app.task(name="bench.incr_sleep10")
def incr_sleep10(t: float) -> None:
    peer_tasks.incr_sleep10(t)


@app.task(name="bench.lat")
def lat(t: float) -> None:
    peer_tasks.lat(t)
