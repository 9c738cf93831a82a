"""RQ: 8 ``rq worker`` processes, with the default forking ``Worker`` or ``SimpleWorker``.

Enqueue: ``Queue.enqueue_many``, 1,000 jobs per pipeline. Completion: the shared counter, as
for every system; ``finished()`` (the finished and failed job registries, RQ's own record) is
read only after it, for the "own record" column.
"""

from __future__ import annotations

import os
import time

import peer_tasks
import redis
from benchlib import BIN, Procs, System, bench_env, wait_until
from rq import Queue

CHUNK = 1000
QUEUE = "bench"


class RQSystem(System):
    def __init__(self, redis_url: str, workdir: str, simple: bool, executors: int = 8) -> None:
        self.redis_url = redis_url
        self.simple = simple
        self.executors = executors
        self.name = "RQ SimpleWorker" if simple else "RQ Worker (fork)"
        self.procs = Procs(workdir)
        self.queue = Queue(QUEUE, connection=redis.Redis.from_url(redis_url))
        self.funcs = {"incr": peer_tasks.incr, "incr_sleep10": peer_tasks.incr_sleep10,
                      "lat": peer_tasks.lat}

    def start(self) -> None:
        worker_class = "rq.worker.SimpleWorker" if self.simple else "rq.worker.Worker"
        argv = [os.path.join(BIN, "rq"), "worker", "-u", self.redis_url, "-w", worker_class,
                "--logging_level", "WARNING", QUEUE]
        for i in range(self.executors):
            self.procs.start(f"rq-{i}", argv, bench_env(self.redis_url))
        from rq import Worker
        wait_until(lambda: len(Worker.all(queue=self.queue)) >= self.executors, 30, 0.1,
                   "rq workers up")

    def stop(self) -> None:
        self.procs.stop()

    def enqueue(self, kind: str, n: int) -> None:
        func = self.funcs[kind]
        for start in range(0, n, CHUNK):
            t = time.time()
            self.queue.enqueue_many([Queue.prepare_data(func, args=(t,), result_ttl=3600)
                                     for _ in range(min(CHUNK, n - start))])

    def enqueue_latency_job(self) -> None:
        self.queue.enqueue(peer_tasks.lat, time.time())

    def finished(self) -> int | None:
        return self.queue.finished_job_registry.count + self.queue.failed_job_registry.count

    @property
    def worker_pids(self) -> list[int]:
        return self.procs.pids
