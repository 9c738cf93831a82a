"""Huey: ``huey_consumer peer_huey.huey -w 8 -k process`` (RedisHuey, blocking dequeue).

Completion: the Redis counter ``bench:done`` incremented by each task (peer_huey.py).
"""

from __future__ import annotations

import os
import time

from benchlib import BIN, Procs, System, bench_env, wait_until


class HueySystem(System):
    name = "Huey"

    def __init__(self, redis_url: str, workdir: str, executors: int = 8) -> None:
        os.environ["BENCH_REDIS_URL"] = redis_url  # read by peer_huey on import
        import peer_huey
        import peer_tasks
        self.tasks = {"noop": peer_huey.noop, "sleep10": peer_huey.sleep10,
                      "lat": peer_huey.lat}
        self.counter = peer_tasks
        self.redis_url = redis_url
        self.executors = executors
        self.procs = Procs(workdir)

    def start(self) -> None:
        argv = [os.path.join(BIN, "huey_consumer"), "peer_huey.huey", "-w",
                str(self.executors), "-k", "process", "-q"]
        self.procs.start("huey", argv, bench_env(self.redis_url))
        self.tasks["noop"](time.time())
        wait_until(lambda: self.finished() >= 1, 60, 0.05, "huey up")

    def stop(self) -> None:
        self.procs.stop()

    def enqueue(self, kind: str, n: int) -> None:
        task = self.tasks[kind]
        t = time.time()
        for _ in range(n):
            task(t)

    def enqueue_latency_job(self) -> None:
        self.tasks["lat"](time.time())

    def finished(self) -> int:
        return int(self.counter.client().get(self.counter.DONE_KEY) or 0)

    @property
    def worker_pids(self) -> list[int]:
        return self.procs.pids
