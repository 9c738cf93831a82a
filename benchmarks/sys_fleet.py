"""fleet: ``fleet controller`` (fsync always) and ``fleet worker --count 8``.

Completion: ``Client.status()`` (completed + dead + cancelled), one control request per poll.
With ``BENCH_FLEET_SIGNING_KEY`` set, every process seals and checks every message with it.
"""

from __future__ import annotations

import os
import time

from benchlib import System, bench_env, wait_until

from fleet.job import JobSpec, new_job_id
from fleet.testing.cluster import LocalFleet

FUNCS = {"noop": "peer_tasks:noop", "sleep10": "peer_tasks:sleep10", "lat": "peer_tasks:lat"}
CHUNK = 5000


class FleetSystem(System):
    name = "fleet"

    def __init__(self, redis_url: str, workdir: str, executors: int = 8,
                 fsync: str = "always") -> None:
        self.redis_url = redis_url
        self.executors = executors
        signing_key = os.environ.get("BENCH_FLEET_SIGNING_KEY", "")
        env = bench_env(redis_url, FLEET_FSYNC=fsync, FLEET_SIGNING_KEY=signing_key)
        env = {k: v for k, v in env.items() if k in ("BENCH_REDIS_URL", "PYTHONPATH",
                                                      "FLEET_FSYNC", "FLEET_SIGNING_KEY")}
        self.fleet = LocalFleet(redis_url, workdir=workdir, namespace="bench", env=env)
        self.client = None
        self.controller = self.worker = None

    def start(self) -> None:
        os.makedirs(self.fleet.workdir, exist_ok=True)
        self.controller = self.fleet.controller()
        self.worker = self.fleet.worker(self.executors, "--allow", "peer_tasks")
        self.client = self.fleet.client(receipt_timeout_s=120)
        wait_until(lambda: self.client.status()["executors"] >= self.executors, 30,
                   0.1, "fleet executors up")

    def stop(self) -> None:
        self.fleet.stop_all()

    def enqueue(self, kind: str, n: int) -> None:
        func = FUNCS[kind]
        for start in range(0, n, CHUNK):
            t = time.time()
            self.client.enqueue_many([JobSpec(id=new_job_id(), func=func, args=[t])
                                      for _ in range(min(CHUNK, n - start))])

    def enqueue_latency_job(self) -> None:
        self.client.enqueue(FUNCS["lat"], time.time())

    def finished(self) -> int:
        states = self.client.status()["states"]
        return states["completed"] + states["dead"] + states["cancelled"]

    @property
    def broker_pids(self) -> list[int]:
        return [self.controller.pid]

    @property
    def worker_pids(self) -> list[int]:
        return [self.worker.pid]
