"""The faults the chaos runner injects, and the seeded schedule that says when.

Each fault fires when the share of finished jobs passes its threshold, drawn once from the
seed, so a run is repeatable in *what* happens at *which stage* however fast the machine is.

=============  ======================================================================
fault          what it does
=============  ======================================================================
controller     SIGKILL the controller, start a new one at once, time its recovery
supervisor     SIGKILL a worker's whole process group (supervisor and executors),
               start a replacement worker
executor       SIGKILL one executor process; its supervisor acks ExecutorDied and
               starts a new one
redis          SIGKILL redis-server and start it again, empty, on the same port
stall          SIGSTOP a worker's process group for longer than its leases can last,
               then SIGCONT (its late acks must be fenced)
=============  ======================================================================

A stalled worker's heartbeat key outlives it by ``WORKER_TTL_S`` and keeps its leases
extended that long, so a stall lasts ``WORKER_TTL_S + lease_s + 1`` seconds.
"""

from __future__ import annotations

import os
import random
import re
import signal
import statistics
import time
from dataclasses import dataclass, field

from ...keys import WORKER_TTL_S
from ...localredis import RedisServer
from ..cluster import LocalFleet, Proc

FAULT_KINDS = ("controller", "supervisor", "executor", "redis", "stall")
RECOVERED_RE = re.compile(r"recovered in (\d+) ms")


@dataclass(frozen=True)
class Fault:
    """One scheduled fault: fire when ``at`` of the jobs are finished; ``pick`` chooses
    the victim among the candidates at that time."""

    kind: str
    at: float
    pick: float


def schedule(counts: dict[str, int], rng: random.Random, start: float = 0.05,
             end: float = 0.85) -> list[Fault]:
    """Faults from ``counts`` (kind -> how many), at seeded progress points, in order."""
    faults = [Fault(kind, round(rng.uniform(start, end), 4), rng.random())
              for kind in FAULT_KINDS for _ in range(counts.get(kind, 0))]
    return sorted(faults, key=lambda fault: fault.at)


@dataclass
class Restart:
    """One controller restart: how long until it answered, and what its log said."""

    answered_ms: float
    logged_ms: int | None


@dataclass
class FaultLog:
    """What was injected, and how many duplicate executions each fault could explain."""

    fired: list[tuple[Fault, str]] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    could_explain: int = 0

    def count(self, kind: str) -> int:
        return sum(1 for fault, _ in self.fired if fault.kind == kind)

    def recovery_summary(self) -> tuple[str, str]:
        """``(answered, logged)`` as "max / median ms" strings."""
        answered = [r.answered_ms for r in self.restarts]
        logged = [r.logged_ms for r in self.restarts if r.logged_ms is not None]
        return _max_median(answered), _max_median(logged)


def _max_median(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{max(values):.0f} / {statistics.median(values):.0f}"


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a worker supervisor's executors)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


class Injector:
    """Carries out faults on a running fleet: one controller, N worker fleets, one Redis."""

    def __init__(self, local: LocalFleet, redis_server: RedisServer, workers: int,
                 executors: int, lease_s: float) -> None:
        self.local = local
        self.redis = redis_server
        self.executors = executors
        self.lease_s = lease_s
        self.controller: Proc | None = None
        self.workers: list[Proc] = []
        self.log = FaultLog()
        self._wanted_workers = workers
        self._stalled: list[tuple[float, int]] = []

    def start(self) -> None:
        self.controller = self.local.controller()
        self.workers = [self.local.worker(self.executors) for _ in range(self._wanted_workers)]

    def fire(self, fault: Fault, in_flight: int) -> None:
        """Inject ``fault``; ``in_flight`` is the last in-flight count seen (for the bound)."""
        what = getattr(self, f"_{fault.kind}")(fault.pick, in_flight)
        self.log.fired.append((fault, what))

    def _controller(self, pick: float, in_flight: int) -> str:
        old = self.controller
        old.kill9()
        started = time.monotonic()
        self.controller = self.local.controller(wait=False)
        self.local.wait_ready(self.controller, timeout_s=120)
        answered_ms = (time.monotonic() - started) * 1000
        match = RECOVERED_RE.search(self.controller.tail(400))
        self.log.restarts.append(Restart(answered_ms, int(match.group(1)) if match else None))
        self.log.could_explain += in_flight
        return f"killed pid {old.pid}; new controller answered in {answered_ms:.0f} ms"

    def _supervisor(self, pick: float, in_flight: int) -> str:
        victim = self.workers.pop(int(pick * len(self.workers)))
        os.killpg(victim.pid, signal.SIGKILL)
        victim.popen.wait()
        self.workers.append(self.local.worker(self.executors))
        self.log.could_explain += self.executors
        return f"killed worker group {victim.pid}; started a replacement"

    def _executor(self, pick: float, in_flight: int) -> str:
        pids = [pid for worker in self.workers for pid in children(worker.pid)]
        if not pids:
            return "no executor to kill"
        victim = pids[int(pick * len(pids))]
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            return f"executor {victim} was already gone"
        self.log.could_explain += 1
        return f"killed executor pid {victim}"

    def _redis(self, pick: float, in_flight: int) -> str:
        self.redis.restart()
        self.log.could_explain += in_flight
        return f"redis-server restarted empty on port {self.redis.port}"

    def _stall(self, pick: float, in_flight: int) -> str:
        victim = self.workers[int(pick * len(self.workers))]
        stall_s = WORKER_TTL_S + self.lease_s + 1
        os.killpg(victim.pid, signal.SIGSTOP)
        self._stalled.append((time.monotonic() + stall_s, victim.pid))
        self.log.could_explain += self.executors
        return f"stopped worker group {victim.pid} for {stall_s:g} s"

    def tick(self) -> None:
        """SIGCONT stalled workers whose stall is over (the run goes on meanwhile)."""
        now = time.monotonic()
        for due, pid in [s for s in self._stalled if s[0] <= now]:
            self._stalled.remove((due, pid))
            _resume(pid)

    @property
    def stalled(self) -> bool:
        return bool(self._stalled)

    def stop(self) -> None:
        for _, pid in self._stalled:
            _resume(pid)
        self._stalled.clear()
        for worker in self.workers:
            worker.stop(timeout_s=20)
        if self.controller is not None:
            self.controller.stop(timeout_s=20)


def _resume(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGCONT)
    except ProcessLookupError:
        pass  # a supervisor kill took the stalled worker meanwhile
