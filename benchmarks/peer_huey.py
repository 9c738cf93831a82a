"""Huey tasks for the benchmark (``huey_consumer peer_huey.huey -w 8 -k process``).

Each task calls the shared body in peer_tasks.py; the tasks return None and Huey keeps no
results (``results=False``), so Huey writes nothing per job besides its queue.
"""

from __future__ import annotations

import os

import peer_tasks
from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"], results=False)


@huey.task()
def incr(t: float) -> None:
    peer_tasks.incr(t)


@huey.task()
def incr_sleep10(t: float) -> None:
    peer_tasks.incr_sleep10(t)


@huey.task()
def lat(t: float) -> None:
    peer_tasks.lat(t)
