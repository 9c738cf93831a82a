"""The worker supervisor: N executor processes, kept alive, watched, and stopped cleanly.

The supervisor runs no jobs. It forks the executors (executor.py), reads what they start and
finish from their Pipes, heartbeats (heartbeat.py), and acts on:

- a job past its timeout plus ``KILL_GRACE_S`` (it ignored the soft SIGALRM timeout, e.g. a
  C call or SIGALRM blocked): SIGKILL its executor, ack ``fail``, start a new executor;
- an executor that died (any cause): ack its job ``fail`` (``ExecutorDied``), start a new one;
- a cancel request for a running job: SIGKILL its executor, ack ``cancelled``;
- the first SIGTERM/SIGINT: drain. Executors get SIGTERM, take no new job and exit after their
  current one; whoever still runs after ``shutdown_grace_s`` is killed and its job handed back
  (``rel``). A second signal is a cold stop: kill now, hand back, exit.

Executors die with the supervisor (PR_SET_PDEATHSIG), and the supervisor kills and reaps any
left when it exits, so no process outlives it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import wait
from typing import Any, cast

from ..clock import now_ms
from ..config import Settings
from ..errors import EXIT_INTERRUPTED, EXIT_OK
from ..keys import Keys
from ..protocol.ack import encode_ack
from ..protocol.signing import ACK, Seal
from ..transport.pipe import worker_client
from .entry import STOP_SIGNALS, executor_main
from .handle import ExecutorHandle, RunningJob
from .heartbeat import SupervisorLink, heartbeat_payload
from .logs import flush_logs
from .wire import Identity, worker_log

KILL_GRACE_S = 2.0
TICK_S = 0.02
QUICK_DEATH_S = 1.0
MAX_RESPAWN_DELAY_S = 10.0
FINAL_FLUSH_S = 5.0
# --burst: heartbeats in a row that must find nothing to do (so at least two whole periods).
BURST_QUIET_BEATS = 3
EXIT_COLD_STOP = EXIT_INTERRUPTED


class Supervisor:
    """Runs and watches the executors of one worker."""

    def __init__(self, settings: Settings, identity: Identity | None = None,
                 kill_grace_s: float = KILL_GRACE_S, burst: bool = False) -> None:
        self.settings = settings
        self.burst = burst
        self._burst_quiet = 0
        self._burst_finished = 0
        self.identity = identity or Identity.new()
        self.kill_grace_s = kill_grace_s
        self.log = worker_log(__name__, self.identity.worker_id)
        self.link = SupervisorLink(worker_client(settings.redis_url, settings.namespace),
                                   Keys(settings.namespace), self.identity,
                                   settings.heartbeat_s, self.log, Seal.of(settings, ACK))
        self.handles: dict[int, ExecutorHandle] = {}
        self.respawn_at: dict[int, float] = {}
        self.quick_deaths: dict[int, int] = {}
        self.signals_seen = 0
        self.drain_deadline: float | None = None
        self.cold = False
        self.done = self.failed = 0
        self.started_ms = now_ms()
        self.next_beat = 0.0
        self._context = multiprocessing.get_context("fork")
        self._wake_r, self._wake_w = socket.socketpair()
        self._previous_handlers: dict[int, Any] = {}

    def run(self) -> int:
        """Start the executors and supervise them until stopped. Returns the exit code."""
        self._install_signals()
        settings = self.settings
        self.log.info("started with %d executors; queues %s; allowed modules %s",
                      settings.executors, ",".join(settings.queues),
                      ",".join(settings.allow) or "(fleet.demo only)")
        try:
            for slot in range(settings.executors):
                self._spawn(slot)
            while not (self.signals_seen and not self.handles):
                self._step()
        finally:
            self._stop_everything()
        self.log.info("stopped (%s); %d jobs done, %d failed",
                      "cold" if self.cold else "drained", self.done, self.failed)
        flush_logs()
        return EXIT_COLD_STOP if self.cold else EXIT_OK

    def _step(self) -> None:
        timeout_s = max(0.0, min(TICK_S, self.next_beat - time.monotonic()))
        wait([self._wake_r, *(h.process.sentinel for h in self.handles.values())], timeout_s)
        self._drain_wakeups()
        for handle in self.handles.values():
            self._count(handle.read())
        self._on_signals()
        self._reap()
        self._respawn_due()
        self._enforce_timeouts()
        if time.monotonic() >= self.next_beat:
            self._beat()

    # -- executors -------------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=executor_main, name=f"fleet-executor-{slot}",
            args=(self.settings, self.identity, slot, sender, os.getpid()))
        # Blocked across the fork: the child unblocks them once its own handlers are in place.
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        sender.close()
        self.handles[slot] = ExecutorHandle(slot, process, receiver)
        self.respawn_at.pop(slot, None)

    def _reap(self) -> None:
        for slot, handle in list(self.handles.items()):
            if handle.alive():
                continue
            self._count(handle.read())
            self._settle(handle)
            handle.close()
            del self.handles[slot]
            if not self.signals_seen:
                self.respawn_at[slot] = time.monotonic() + self._respawn_delay(handle)

    def _settle(self, handle: ExecutorHandle) -> None:
        """Push the acks a gone executor owes, and say why it went when that is news."""
        acks = handle.exit_acks(self.identity)
        if handle.kill_reason is None and handle.job is not None:
            self.log.warning("executor e%d (pid %d) %s while running job %s; starting a new one",
                             handle.slot, handle.pid, handle.describe_exit(), handle.job.job_id)
        elif handle.kill_reason is None and not self.signals_seen:
            self.log.warning("executor e%d (pid %d) %s; starting a new one", handle.slot,
                             handle.pid, handle.describe_exit())
        self.failed += sum(1 for ack in acks if ack["o"] == "fail")
        self.link.push(handle.handed_acks + handle.ack_copies
                       + [encode_ack(ack) for ack in acks])

    def _respawn_delay(self, handle: ExecutorHandle) -> float:
        """No delay for executors the supervisor killed; a growing one for a crash loop."""
        quick = (handle.kill_reason is None
                 and time.monotonic() - handle.born_mono < QUICK_DEATH_S)
        deaths = self.quick_deaths.get(handle.slot, 0) + 1 if quick else 0
        self.quick_deaths[handle.slot] = deaths
        return min(MAX_RESPAWN_DELAY_S, 0.25 * 2 ** deaths) if deaths else 0.0

    def _respawn_due(self) -> None:
        now = time.monotonic()
        for slot, due in list(self.respawn_at.items()):
            if now >= due and not self.signals_seen:
                self._spawn(slot)

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for handle in self.handles.values():
            if handle.kill_reason is None and handle.overdue(now, self.kill_grace_s):
                job = cast(RunningJob, handle.job)  # overdue: it runs one
                self.log.warning("job %s attempt %d ran past its timeout of %g s (+%g s grace); "
                                 "killing executor e%d (pid %d)", job.job_id, job.attempt,
                                 job.timeout_s, self.kill_grace_s, handle.slot, handle.pid)
                handle.kill("timeout")

    def _count(self, finished: list[bool]) -> None:
        for ok in finished:
            if ok:
                self.done += 1
            else:
                self.failed += 1

    # -- heartbeats and cancels ------------------------------------------------------------

    def _beat(self) -> None:
        self.next_beat = time.monotonic() + self.settings.heartbeat_s
        flush_logs()
        jobs = [h.job for h in self.handles.values() if h.job is not None]
        payload = heartbeat_payload(self.identity, os.getpid(), self.started_ms,
                                    self.settings.queues, len(self.handles), jobs, self.done,
                                    self.failed)
        cancelled, queued = self.link.beat(encode_ack(payload),
                                           self.settings.queues if self.burst else ())
        if cancelled:
            self._cancel(set(cancelled))
        if self.burst and not self.signals_seen:
            self._burst_check(queued)

    def _burst_check(self, queued: int | None) -> None:
        """Stop (a drain, exit 0) once BURST_QUIET_BEATS heartbeats in a row found the ready
        lists empty, every executor idle and no job finished since the previous one.

        A job that starts and ends between two heartbeats still shows as a finished count
        that moved, so a trickle of short jobs keeps the worker up."""
        finished = self.done + self.failed
        idle = all(h.job is None and not h.held for h in self.handles.values())
        quiet = queued == 0 and idle and finished == self._burst_finished
        self._burst_finished = finished
        self._burst_quiet = self._burst_quiet + 1 if quiet else 0
        if self._burst_quiet >= BURST_QUIET_BEATS:
            self.log.info("burst: ready lists of %s empty and executors idle for %d "
                          "heartbeats; stopping", ",".join(self.settings.queues),
                          BURST_QUIET_BEATS)
            self.signals_seen = 1

    def _cancel(self, job_ids: set[str]) -> None:
        for handle in self.handles.values():
            job = handle.job
            if job is not None and job.job_id in job_ids and handle.kill_reason is None:
                self.log.info("cancelling job %s attempt %d: killing executor e%d (pid %d)",
                              job.job_id, job.attempt, handle.slot, handle.pid)
                handle.kill("cancel")

    # -- signals and shutdown --------------------------------------------------------------

    def _install_signals(self) -> None:
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals_seen += 1

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _on_signals(self) -> None:
        if self.signals_seen and self.drain_deadline is None:
            self.drain_deadline = time.monotonic() + self.settings.shutdown_grace_s
            self.respawn_at.clear()
            self.log.info("draining: executors finish their current job (grace %g s); "
                          "signal again for a cold stop", self.settings.shutdown_grace_s)
            for handle in self.handles.values():
                handle.terminate()
        if self.signals_seen >= 2 and not self.cold:
            self.cold = True
            self.log.info("cold stop: killing executors, handing their jobs back")
            for handle in self.handles.values():
                handle.kill("cold")
        if self.drain_deadline is not None and time.monotonic() >= self.drain_deadline:
            for handle in self.handles.values():
                if handle.kill_reason is None:
                    handle.kill("drain")

    def _stop_everything(self) -> None:
        """Kill and reap whatever is left, push every ack owed, leave the heartbeat set."""
        self.signals_seen = max(self.signals_seen, 1)
        for handle in self.handles.values():
            handle.kill("cold")
        for handle in self.handles.values():
            handle.process.join(timeout=5)
        self._reap()
        self.link.flush(FINAL_FLUSH_S)
        self.link.deregister()
        self.link.close()
        signal.set_wakeup_fd(-1)
        for signum, previous in self._previous_handlers.items():
            signal.signal(signum, previous)
        self._wake_r.close()
        self._wake_w.close()
