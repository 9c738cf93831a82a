"""fleet: ``fleet controller`` (fsync always) and ``fleet worker --count 8``.

Enqueue: ``Client.enqueue_many``; the ``fleet enqueue --file`` variant runs the CLI on a JSON lines
file written beforehand. Completion: the shared counter, as for every system; ``finished()``
(``Client.status()``: completed + dead + cancelled, fleet's own record) is the signal only for
the pure no-op row, and is read after the counter otherwise.
The worker runs with ``--quiet`` (no log line per finished job), as the peers run with their
per-job logging off; ``BENCH_FLEET_QUIET=0`` keeps the lines. With ``BENCH_FLEET_SIGNING_KEY``
set, every process seals and checks every message with it.
"""

from __future__ import annotations

import os
import time

import orjson
from benchlib import System, Variant, bench_env, wait_until

from fleet.job import JobSpec, new_job_id
from fleet.testing.cluster import LocalFleet

FUNCS = {"incr": "peer_tasks:incr", "incr_sleep10": "peer_tasks:incr_sleep10",
         "noop": "peer_tasks:noop", "lat": "peer_tasks:lat"}
CHUNK = 5000


class FleetSystem(System):
    name = "fleet"

    def __init__(self, redis_url: str, workdir: str, executors: int = 8,
                 fsync: str = "always", namespace: str = "bench") -> None:
        self.redis_url = redis_url
        self.executors = executors
        signing_key = os.environ.get("BENCH_FLEET_SIGNING_KEY", "")
        env = bench_env(redis_url, FLEET_FSYNC=fsync, FLEET_SIGNING_KEY=signing_key)
        env = {k: v for k, v in env.items() if k in ("BENCH_REDIS_URL", "PYTHONPATH",
                                                      "FLEET_FSYNC", "FLEET_SIGNING_KEY")}
        self.fleet = LocalFleet(redis_url, workdir=workdir, namespace=namespace, env=env)
        self.client = None
        self.controller = self.worker = None

    def start(self) -> None:
        os.makedirs(self.fleet.workdir, exist_ok=True)
        self.controller = self.fleet.controller()
        quiet = ["--quiet"] if os.environ.get("BENCH_FLEET_QUIET", "1") == "1" else []
        self.worker = self.fleet.worker(self.executors, "--allow", "peer_tasks", *quiet)
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

    def finished(self) -> int | None:
        states = self.client.status()["states"]
        return states["completed"] + states["dead"] + states["cancelled"]

    def variants(self) -> list[Variant]:
        return [Variant("fleet (`fleet enqueue --file`)", "incr", self.enqueue_file,
                        prepare=self.prepare_file),
                Variant("fleet, pure no-op", "noop", self.enqueue, "record")]

    def _job_file(self, kind: str, n: int) -> str:
        return os.path.join(self.fleet.workdir, f"{kind}-{n}.jsonl")

    def prepare_file(self, kind: str, n: int) -> None:
        """The JSON lines job file ``enqueue_file`` reads (written before the clock starts)."""
        line = orjson.dumps({"func": FUNCS[kind], "args": [time.time()]}) + b"\n"
        with open(self._job_file(kind, n), "wb") as handle:
            handle.write(line * n)

    def enqueue_file(self, kind: str, n: int) -> None:
        """``fleet enqueue --file``, as a user would run it: a new process, until it exits."""
        done = self.fleet.cli("enqueue", "--file", self._job_file(kind, n), "--quiet",
                              timeout_s=600)
        if done.returncode != 0:
            raise RuntimeError(f"fleet enqueue --file exited {done.returncode}: "
                               f"{done.stderr.strip()[-500:]}")

    @property
    def broker_pids(self) -> list[int]:
        return [self.controller.pid]

    @property
    def worker_pids(self) -> list[int]:
        return [self.worker.pid]
