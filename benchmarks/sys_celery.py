"""Celery: ``celery -A peer_celery worker --pool prefork --concurrency 8`` on its Redis broker.

Enqueue: ``group(task.s(t) for …).apply_async()``, Celery's bulk call (one producer, one
``LPUSH`` per message inside), 1,000 signatures per group. Completion: the shared counter;
no result backend, so Celery keeps no record of finished jobs here.
"""

from __future__ import annotations

import os
import time

import peer_tasks
from benchlib import BIN, Procs, System, bench_env, wait_until

CHUNK = 1000


class CelerySystem(System):
    name = "Celery"

    def __init__(self, redis_url: str, workdir: str, executors: int = 8) -> None:
        os.environ["BENCH_REDIS_URL"] = redis_url  # read by peer_celery on import
        import peer_celery
        self.tasks = {"incr": peer_celery.incr, "incr_sleep10": peer_celery.incr_sleep10,
                      "lat": peer_celery.lat}
        self.redis_url = redis_url
        self.executors = executors
        self.procs = Procs(workdir)

    def start(self) -> None:
        argv = [os.path.join(BIN, "celery"), "-A", "peer_celery", "worker", "--pool",
                "prefork", "--concurrency", str(self.executors), "--loglevel", "WARNING"]
        self.procs.start("celery", argv, bench_env(self.redis_url))
        self.tasks["incr"].delay(time.time())
        wait_until(lambda: peer_tasks.done_count(peer_tasks.client()) >= 1, 60, 0.05,
                   "celery up")

    def stop(self) -> None:
        self.procs.stop()

    def enqueue(self, kind: str, n: int) -> None:
        from celery import group
        task = self.tasks[kind]
        for start in range(0, n, CHUNK):
            t = time.time()
            group(task.s(t) for _ in range(min(CHUNK, n - start))).apply_async()

    def enqueue_latency_job(self) -> None:
        self.tasks["lat"].delay(time.time())

    @property
    def worker_pids(self) -> list[int]:
        return self.procs.pids
