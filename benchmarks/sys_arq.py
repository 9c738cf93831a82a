"""arq: two ``arq peer_arq.WorkerSettings`` processes, ``max_jobs`` 4 each (8 executors),
``poll_delay`` 10 ms (peer_arq.py says why).

Enqueue: ``ArqRedis.enqueue_job`` per job, 50 at a time under ``asyncio.gather`` (arq has
no bulk call; each ``enqueue_job`` is one MULTI/EXEC). Completion: the shared counter;
``keep_result=0``, so arq keeps no record of finished jobs here.
"""

from __future__ import annotations

import asyncio
import os
import time

import peer_tasks
from benchlib import BIN, Procs, System, bench_env, wait_until

CHUNK = 50  # concurrent enqueue_job calls: one connection each
PROCESSES = 2


class ArqSystem(System):
    name = "arq"

    def __init__(self, redis_url: str, workdir: str, executors: int = 8) -> None:
        os.environ["BENCH_REDIS_URL"] = redis_url  # read by peer_tasks.client()
        self.redis_url = redis_url
        self.executors = executors
        self.procs = Procs(workdir)
        self.loop = asyncio.new_event_loop()
        self.pool = None

    def start(self) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings
        self.pool = self.loop.run_until_complete(
            create_pool(RedisSettings.from_dsn(self.redis_url)))
        env = bench_env(self.redis_url, BENCH_ARQ_MAX_JOBS=str(self.executors // PROCESSES))
        for i in range(PROCESSES):
            self.procs.start(f"arq-{i}", [os.path.join(BIN, "arq"), "peer_arq.WorkerSettings"],
                             env)
        self._run(self.pool.enqueue_job("incr", time.time()))
        wait_until(lambda: peer_tasks.done_count(peer_tasks.client()) >= 1, 60, 0.05,
                   "arq up")

    def stop(self) -> None:
        self.procs.stop()
        if self.pool is not None:
            self._run(self.pool.aclose())
        self.loop.close()

    def _run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def enqueue(self, kind: str, n: int) -> None:
        self._run(self._enqueue(kind, n))

    async def _enqueue(self, kind: str, n: int) -> None:
        for start in range(0, n, CHUNK):
            t = time.time()
            await asyncio.gather(*(self.pool.enqueue_job(kind, t)
                                   for _ in range(min(CHUNK, n - start))))

    def enqueue_latency_job(self) -> None:
        self._run(self.pool.enqueue_job("lat", time.time()))

    @property
    def worker_pids(self) -> list[int]:
        return self.procs.pids
