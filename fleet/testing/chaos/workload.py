"""The chaos workload: a seeded mix of job kinds, and the thread that enqueues it.

Kinds and what the record must show at the end:

========  ==========================================  ============================
kind      what the function does                      expected end state
========  ==========================================  ============================
fast      logs its execution, returns                 completed
fragile   the same, with ``max_retries=0``            completed (dead only if a fault cut
                                                      short an execution of it)
slow      logs, sleeps 50-400 ms                      completed
flaky     logs, fails on its first execution only     completed (after one retry)
doomed    logs, always raises; ``max_retries=2``      dead after 3 attempts
========  ==========================================  ============================

``fragile`` jobs have no retry to spare, so a fault that fleet charges as a failed attempt
although the job never ran (a lost message) shows as a job dead without ever having run.

The enqueuer sends chunks through the ordinary Client. A chunk without a receipt (controller
killed, Redis restarted) is sent again with the same ids until every job is confirmed durable:
``accepted`` or ``duplicate`` (docs/protocol.md §1).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...client import Client
from ...errors import FleetError
from ...job import JobSpec

MODULE = "fleet.testing.chaos.jobs"
KINDS = ("fast", "fragile", "slow", "flaky", "doomed")
DEFAULT_MIX = {"fast": 0.60, "fragile": 0.10, "slow": 0.10, "flaky": 0.10, "doomed": 0.10}
EXPECTED_STATE = {"fast": "completed", "fragile": "completed", "slow": "completed",
                  "flaky": "completed", "doomed": "dead"}
RETRIES_OF = {"doomed": 2, "fragile": 0}
RETRIES = 8
TIMEOUT_S = 20.0
CHUNK = 500


@dataclass(frozen=True)
class PlannedJob:
    """One job of the workload and the kind that decides its expected outcome."""

    id: str
    kind: str
    spec: JobSpec


def plan_jobs(total: int, rng: random.Random, log_path: str, marker_dir: str,
              mix: dict[str, float] | None = None) -> list[PlannedJob]:
    """``total`` jobs with kinds drawn from ``mix`` (fractions per kind)."""
    mix = mix or DEFAULT_MIX
    kinds = rng.choices(list(mix), weights=list(mix.values()), k=total)
    return [_planned(f"c{i:06d}-{kind}", kind, rng, log_path, marker_dir)
            for i, kind in enumerate(kinds)]


def _planned(job_id: str, kind: str, rng: random.Random, log_path: str,
             marker_dir: str) -> PlannedJob:
    kwargs: dict[str, Any] = {"log_path": log_path}
    if kind == "slow":
        kwargs["sleep_ms"] = rng.randint(50, 400)
    elif kind == "flaky":
        kwargs["marker_dir"] = marker_dir
    retries = RETRIES_OF.get(kind, RETRIES)
    func = "fast" if kind == "fragile" else kind
    spec = JobSpec(id=job_id, func=f"{MODULE}:{func}", kwargs=kwargs, timeout_s=TIMEOUT_S,
                   max_retries=retries)
    return PlannedJob(job_id, kind, spec)


@dataclass
class Enqueuer:
    """Sends the planned jobs in chunks from a thread, keeping at most ``backlog`` unfinished.

    ``finished`` is called for the number of jobs the controller reports finished, which paces
    the sending so that faults land while intake is still busy.
    """

    client: Client
    jobs: list[PlannedJob]
    finished: Callable[[], int]
    backlog: int = 2000
    confirmed: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    resends: int = 0
    errors: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="chaos-enqueuer", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            for start in range(0, len(self.jobs), CHUNK):
                if self.stop.is_set():
                    return
                while (start - self.finished() > self.backlog
                       and not self.stop.wait(0.1)):
                    pass
                self._send([job.spec for job in self.jobs[start:start + CHUNK]])
        finally:
            self.done.set()

    def _send(self, specs: list[JobSpec]) -> None:
        while not self.stop.is_set():
            try:
                receipts = self.client.enqueue_many(specs)
            except FleetError as exc:
                self.resends += 1
                self.errors.append(str(exc).split(":")[0])
                time.sleep(0.5)
                continue
            for receipt in receipts:
                if receipt.durable:
                    self.confirmed[receipt.id] = receipt.status
                else:
                    self.rejected[receipt.id] = receipt.reason
            return
