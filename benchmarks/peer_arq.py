"""arq's worker settings for the benchmark (``arq peer_arq.WorkerSettings``, run twice).

arq runs only coroutines, so each job awaits the asyncio twin of the shared body in
peer_tasks.py (the same Redis command; ``asyncio.sleep`` for the 10 ms job). ``max_jobs`` 4
per process, two processes: 8 executors over both cores (one process holds one GIL, as
Dramatiq's ``-p 2 -t 4``). ``keep_result=0``: no result key per job, like Huey and Dramatiq
here. ``poll_delay`` is 10 ms instead of arq's default 0.5 s: arq has no blocking pop, it
polls its queue (a sorted set), and a poll that finds ``max_jobs`` running returns and sleeps
out the rest of ``poll_delay``, so with 0.5 s each process starts about ``max_jobs`` jobs per
half second (a quick run with the default: 200 jobs/s drained, 16 jobs/s of 10 ms jobs,
enqueue→start p50 275 ms). ``BENCH_ARQ_POLL_DELAY_S`` sets it. The rest is arq's default.
"""

from __future__ import annotations

import os
from typing import Any

import peer_tasks
from arq.connections import RedisSettings

MAX_JOBS = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "4"))
POLL_DELAY_S = float(os.environ.get("BENCH_ARQ_POLL_DELAY_S", "0.01"))


async def incr(ctx: dict[str, Any], t: float) -> None:
    await peer_tasks.aincr(t)


async def incr_sleep10(ctx: dict[str, Any], t: float) -> None:
    await peer_tasks.aincr_sleep10(t)


async def lat(ctx: dict[str, Any], t: float) -> None:
    await peer_tasks.alat(t)


class WorkerSettings:
    functions = [incr, incr_sleep10, lat]
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])
    max_jobs = MAX_JOBS
    keep_result = 0
    poll_delay = POLL_DELAY_S
