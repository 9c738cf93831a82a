"""Huey: ``huey_consumer peer_huey.huey -w 8 -k process`` (RedisHuey, blocking dequeue).

Enqueue: ``task.map(...)``, Huey's bulk call (one ``LPUSH`` per job). Completion: the shared
counter; Huey keeps no record of finished jobs here (``results=False``).
"""

from __future__ import annotations

import os
import time

import peer_tasks
from benchlib import BIN, Procs, System, bench_env, wait_until


class HueySystem(System):
    name = "Huey"

    def __init__(self, redis_url: str, workdir: str, executors: int = 8) -> None:
        os.environ["BENCH_REDIS_URL"] = redis_url  # read by peer_huey on import
        import peer_huey
        self.tasks = {"incr": peer_huey.incr, "incr_sleep10": peer_huey.incr_sleep10,
                      "lat": peer_huey.lat}
        self.redis_url = redis_url
        self.executors = executors
        self.procs = Procs(workdir)

    def start(self) -> None:
        argv = [os.path.join(BIN, "huey_consumer"), "peer_huey.huey", "-w",
                str(self.executors), "-k", "process", "-q"]
        self.procs.start("huey", argv, bench_env(self.redis_url))
        self.tasks["incr"](time.time())
        wait_until(lambda: peer_tasks.done_count(peer_tasks.client()) >= 1, 60, 0.05,
                   "huey up")

    def stop(self) -> None:
        self.procs.stop()

    def enqueue(self, kind: str, n: int) -> None:
        t = time.time()
        self.tasks[kind].map([t] * n)

    def enqueue_latency_job(self) -> None:
        self.tasks["lat"](time.time())

    @property
    def worker_pids(self) -> list[int]:
        return self.procs.pids
