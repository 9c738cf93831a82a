"""Carries out the faults of ``faults.py`` on a running fleet, and watches the controller.

A fault with a second half (a SIGCONT, a memory limit lifted, a clock set right, a rollback's
reload) schedules it with ``_later``; ``tick()``, called from the runner's loop, runs what is
due, so the run goes on meanwhile. ``tick()`` also starts a new controller when the controller
exits without the runner having killed it, and records the exit: a controller that a fault (or
a message a fault left behind) stops is a failure of the promise, even if it comes back.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable

from ...controller.fence import LEASE_TTL_MS
from ...keys import WORKER_TTL_S
from ...localredis import RedisServer
from ..cluster import LocalFleet, Proc
from .fakeclock import FakeClock, prepare
from .faults import Fault, FaultLog, Restart
from .redisfaults import OOM_S, ROLLBACK_AFTER_S, RedisFaults

RECOVERED_RE = re.compile(r"recovered in (\d+) ms")
CONTROLLER_STOP_S = LEASE_TTL_MS / 1000 + 2
ACKS_PILE_S = 1.0
CLOCK_STEP_S = 3600
CLOCK_HOLD_S = 10.0
# A controller that keeps dying is started again at most this often.
RESTART_EVERY_S = 1.0


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
                 executors: int, lease_s: float, workdir: str) -> None:
        self.local = local
        self.redis = RedisFaults(redis_server, local.namespace)
        self.executors = executors
        self.lease_s = lease_s
        self.controller: Proc | None = None
        self.workers: list[Proc] = []
        self.log = FaultLog()
        self._wanted_workers = workers
        self._later: list[tuple[float, str, Callable[[], str]]] = []
        self._last_start = 0.0
        self._clock_steps = 0
        clock = prepare(workdir)
        self.clock: FakeClock | None = None
        if isinstance(clock, FakeClock):
            self.clock = clock
        else:
            self.log.left_out["clock-step"] = clock

    def start(self) -> None:
        self.controller = self._start_controller(wait=True)
        self.workers = [self.local.worker(self.executors) for _ in range(self._wanted_workers)]

    def _start_controller(self, wait: bool) -> Proc:
        self._last_start = time.monotonic()
        env = self.clock.environment() if self.clock else None
        return self.local.controller(env=env, wait=wait)

    def _running(self) -> Proc:
        """The controller faults act on: ``start`` sets it, a restart replaces it."""
        assert self.controller is not None, "Injector.start() first"
        return self.controller

    def _fake_clock(self) -> FakeClock:
        """The controller's clock; clock-step is left out when there is none."""
        assert self.clock is not None, "clock-step fired without libfaketime"
        return self.clock

    def can_inject(self, kind: str) -> bool:
        return kind not in self.log.left_out

    def fire(self, fault: Fault, in_flight: int) -> None:
        """Inject ``fault``; ``in_flight`` is the last in-flight count seen (for the bound)."""
        method = getattr(self, "_" + fault.kind.replace("-", "_"))
        self.log.fired.append((fault, method(fault.pick, in_flight)))

    def _later_do(self, delay_s: float, kind: str, action: Callable[[], str]) -> None:
        self._later.append((time.monotonic() + delay_s, kind, action))

    # -- processes -----------------------------------------------------------------------

    def _kill_controller(self, pick: float, in_flight: int) -> str:
        old = self._running()
        old.kill9()
        started = time.monotonic()
        self.controller = self._start_controller(wait=False)
        while True:
            try:
                self.local.wait_ready(self.controller, timeout_s=1)
                break
            except RuntimeError as exc:  # the watchdog starts another and records the exit
                # A fault still on (Redis refusing writes, a stopped worker) ends on time:
                # the new controller cannot answer before an OOM is lifted.
                self._run_due()
                if not self.controller.alive() or time.monotonic() - started > 120:
                    return f"killed pid {old.pid}; the new controller did not come up: " + \
                        str(exc).splitlines()[0]
        answered_ms = (time.monotonic() - started) * 1000
        match = RECOVERED_RE.search(self.controller.tail(400))
        self.log.restarts.append(Restart(answered_ms, int(match.group(1)) if match else None))
        self.log.could_explain += in_flight
        return f"killed pid {old.pid}; new controller answered in {answered_ms:.0f} ms"

    def _stop_controller(self, pick: float, in_flight: int) -> str:
        victim = self._running()
        victim.signal(signal.SIGSTOP)
        self._later_do(CONTROLLER_STOP_S, "stop-controller", lambda: _cont(victim))
        self.log.could_explain += in_flight
        return (f"stopped controller pid {victim.pid} for {CONTROLLER_STOP_S:g} s (its lease "
                f"lasts {LEASE_TTL_MS / 1000:g} s)")

    def _kill_supervisor(self, pick: float, in_flight: int) -> str:
        victim = self.workers.pop(int(pick * len(self.workers)))
        os.killpg(victim.pid, signal.SIGKILL)
        victim.popen.wait()
        self.workers.append(self.local.worker(self.executors))
        self.log.could_explain += self.executors
        return f"killed worker group {victim.pid}; started a replacement"

    def _kill_executor(self, pick: float, in_flight: int) -> str:
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

    def _stall_worker(self, pick: float, in_flight: int) -> str:
        victim = self.workers[int(pick * len(self.workers))]
        stall_s = WORKER_TTL_S + self.lease_s + 1
        os.killpg(victim.pid, signal.SIGSTOP)
        self._later_do(stall_s, "stall-worker", lambda: _resume_group(victim.pid))
        self.log.could_explain += self.executors
        return f"stopped worker group {victim.pid} for {stall_s:g} s"

    # -- Redis -----------------------------------------------------------------------------

    def _restart_redis(self, pick: float, in_flight: int) -> str:
        self.redis.forget_dump()  # an empty restart, even with a rollback's SAVE pending
        self.redis.server.restart()
        self.log.could_explain += in_flight
        return f"redis-server restarted empty on port {self.redis.server.port}"

    def _del_ready(self, pick: float, in_flight: int) -> str:
        self.log.could_explain += in_flight
        return self.redis.delete_ready()

    def _del_acks(self, pick: float, in_flight: int) -> str:
        # The controller drains acks within milliseconds: pause it briefly (well inside its
        # lease) so that the list holds outcomes when it is deleted.
        victim = self._running()
        victim.signal(signal.SIGSTOP)
        self._later_do(ACKS_PILE_S, "del-acks", lambda: self._del_acks_now(victim))
        self.log.could_explain += in_flight
        return f"stopped controller pid {victim.pid} for {ACKS_PILE_S:g} s to let acks pile up"

    def _del_acks_now(self, victim: Proc) -> str:
        what = self.redis.delete_acks()
        return f"{what}; {_cont(victim)}"

    def _rollback_redis(self, pick: float, in_flight: int) -> str:
        what = self.redis.save()
        self._later_do(ROLLBACK_AFTER_S, "rollback-redis", self.redis.roll_back)
        self.log.could_explain += in_flight
        return f"{what}; rolling back to it in {ROLLBACK_AFTER_S:g} s"

    def _oom(self, pick: float, in_flight: int) -> str:
        what = self.redis.starve()
        self._later_do(OOM_S, "oom", self.redis.feed)
        self.log.could_explain += in_flight
        return what

    # -- the controller's clock ------------------------------------------------------------

    def _clock_step(self, pick: float, in_flight: int) -> str:
        # Alternate back and forward, so that a run with two steps has one of each.
        delta_s = -CLOCK_STEP_S if self._clock_steps % 2 == 0 else CLOCK_STEP_S
        self._clock_steps += 1
        self._fake_clock().step(delta_s)
        self._later_do(CLOCK_HOLD_S, "clock-step", lambda: self._clock_back(-delta_s))
        self.log.could_explain += in_flight
        return (f"controller's wall clock stepped {delta_s:+d} s for {CLOCK_HOLD_S:g} s, "
                "monotonic clock untouched")

    def _clock_back(self, delta_s: int) -> str:
        self._fake_clock().step(delta_s)
        return f"controller's wall clock stepped {delta_s:+d} s (true again)"

    # -- the run's loop ----------------------------------------------------------------------

    def tick(self) -> None:
        """Run the second halves that are due; start a controller again if one died."""
        self._run_due()
        self._watch_controller()

    def _run_due(self) -> None:
        now = time.monotonic()
        for item in [item for item in self._later if item[0] <= now]:
            self._later.remove(item)
            self.log.later.append((item[1], item[2]()))

    def _watch_controller(self) -> None:
        proc = self.controller
        if proc is None or proc.alive() or time.monotonic() - self._last_start < RESTART_EVERY_S:
            return
        last = self.log.fired[-1][0].kind if self.log.fired else "none yet"
        tail = proc.tail(3).strip().splitlines()
        self.log.exits.append(f"controller pid {proc.pid} exited {proc.popen.returncode} "
                              f"(last fault: {last}): {tail[-1] if tail else 'no output'}")
        self.controller = self._start_controller(wait=False)

    @property
    def busy(self) -> bool:
        """A fault's second half is still to come."""
        return bool(self._later)

    def stop(self) -> None:
        for _, kind, action in sorted(self._later, key=lambda item: item[0]):
            self.log.later.append((kind, action()))
        self._later.clear()
        for worker in self.workers:
            worker.stop(timeout_s=20)
        if self.controller is not None:
            self.controller.stop(timeout_s=20)


def _cont(proc: Proc) -> str:
    if not proc.alive():
        return f"controller pid {proc.pid} was gone before its SIGCONT"
    proc.signal(signal.SIGCONT)
    return f"SIGCONT to controller pid {proc.pid}"


def _resume_group(pgid: int) -> str:
    try:
        os.killpg(pgid, signal.SIGCONT)
    except ProcessLookupError:
        return f"worker group {pgid} was gone before its SIGCONT"  # a supervisor kill took it
    return f"SIGCONT to worker group {pgid}"
