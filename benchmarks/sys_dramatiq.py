"""Dramatiq: ``dramatiq peer_dramatiq --processes 2 --threads 4`` on its Redis broker.

Enqueue: one ``actor.send`` per job (Dramatiq has no bulk enqueue; a ``group`` sends one by one
as well). Completion: the shared counter; no result backend, so no record of finished jobs.
"""

from __future__ import annotations

import os
import time

import peer_tasks
from benchlib import BIN, Procs, System, bench_env, wait_until


class DramatiqSystem(System):
    name = "Dramatiq"

    def __init__(self, redis_url: str, workdir: str, processes: int = 2, threads: int = 4
                 ) -> None:
        os.environ["BENCH_REDIS_URL"] = redis_url  # read by peer_dramatiq on import
        import peer_dramatiq
        self.actors = {"incr": peer_dramatiq.incr, "incr_sleep10": peer_dramatiq.incr_sleep10,
                       "lat": peer_dramatiq.lat}
        self.redis_url = redis_url
        self.processes, self.threads = processes, threads
        self.executors = processes * threads
        self.procs = Procs(workdir)

    def start(self) -> None:
        argv = [os.path.join(BIN, "dramatiq"), "peer_dramatiq", "--processes",
                str(self.processes), "--threads", str(self.threads)]
        self.procs.start("dramatiq", argv, bench_env(self.redis_url))
        self.actors["incr"].send(time.time())
        wait_until(lambda: peer_tasks.done_count(peer_tasks.client()) >= 1, 60, 0.05,
                   "dramatiq up")

    def stop(self) -> None:
        self.procs.stop()

    def enqueue(self, kind: str, n: int) -> None:
        actor = self.actors[kind]
        t = time.time()
        for _ in range(n):
            actor.send(t)

    def enqueue_latency_job(self) -> None:
        self.actors["lat"].send(time.time())

    @property
    def worker_pids(self) -> list[int]:
        return self.procs.pids
