"""Huey tasks for the benchmark (``huey_consumer peer_huey.huey -w 8 -k process``).

Completion is counted with the Redis counter ``bench:done`` that each task increments; the
tasks return None, so Huey stores no results.
"""

from __future__ import annotations

import os

import peer_tasks
from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"], results=False)


@huey.task()
def noop(t: float) -> None:
    peer_tasks.count_noop(t)


@huey.task()
def sleep10(t: float) -> None:
    peer_tasks.count_sleep10(t)


@huey.task()
def lat(t: float) -> None:
    peer_tasks.lat(t)
