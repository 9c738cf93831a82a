"""The supervisor's view of one executor process: the job it runs, the messages it holds, and
the acks owed for them once the process is gone.

An executor that is killed, or dies, cannot ack its own job, so the supervisor does, from what
the executor told it over the Pipe (executor.py). Why the process ended decides the ack:

==============  ===================================================================
kill reason     ack for the running job (prefetched, unstarted messages: ``rel``)
==============  ===================================================================
``timeout``     ``fail``  ``JobTimeoutException: … killed after N s``
``cancel``      ``cancelled``
``drain``       ``rel``   (not finished within the shutdown grace)
``cold``        ``rel``   (second signal)
none            ``fail``  ``ExecutorDied: …`` (it crashed, or someone else killed it)
==============  ===================================================================
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, NamedTuple

from ..clock import now_ms
from .wire import Identity, make_ack

READ_BYTES = 64 * 1024
# What an executor tells its supervisor over the Pipe (executor.py; read in ``_apply``):
# ("s", id, attempt, started_ms, timeout_s, held, done, owed), ("f", id, attempt, ok, owed),
# ("r",), ("x", acks), ("p", id, attempt, fraction, message, at_ms) (progress.py).
# ``owed`` is (reset, ack): the finished job's ack or None, and whether every ack told before
# is confirmed in Redis. The copies held are pushed if the process dies.
Event = tuple[Any, ...]
_SIZE = struct.Struct("!i")
_BIG_SIZE = struct.Struct("!Q")


class RunningJob(NamedTuple):
    """A job an executor said it started (a tuple: one is made per job)."""

    job_id: str
    attempt: int
    started_ms: int
    timeout_s: float
    started_mono: float
    progress: tuple[float, str, int] | None = None  # the latest (fraction, message, at_ms)


class ExecutorHandle:
    """One executor process, its Pipe, and what it is doing."""

    def __init__(self, slot: int, process: BaseProcess, conn: Connection) -> None:
        self.slot = slot
        self.process = process
        self.conn = conn
        self.born_mono = time.monotonic()
        self.job: RunningJob | None = None
        self.held: list[tuple[str, int]] = []
        self.handed_acks: list[bytes] = []
        self.ack_copies: list[bytes] = []  # unconfirmed in Redis: pushed if the process dies
        self.kill_reason: str | None = None
        self.killed_mono = 0.0
        self._owed: tuple[RunningJob | None, list[tuple[str, int]]] | None = None
        self._partial = b""

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def read(self) -> list[bool]:
        """Take every event the executor sent. Returns the ``ok`` of each job it finished."""
        finished: list[bool] = []
        now_mono = time.monotonic()
        for event in self._events():
            self._apply(event, finished, now_mono)
        return finished

    def _events(self) -> list[Event]:
        """Every whole event waiting in the Pipe (the executor is gone when it is closed).

        The executor sends an event per job, so the Pipe is read a buffer at a time rather
        than with a ``recv`` (three system calls) per event. Frames are those of
        ``multiprocessing.Connection``: a 4-byte big-endian length (-1 and then 8 bytes for a
        huge one) and the pickle; a frame cut by the buffer waits for the next read.
        """
        data = self._partial
        try:
            while self.conn.poll():
                chunk = os.read(self.conn.fileno(), READ_BYTES)
                if not chunk:
                    break  # the executor is gone; reaping will notice
                data += chunk
        except (EOFError, OSError):
            pass
        events: list[Event] = []
        offset, end = 0, len(data)
        while end - offset >= _SIZE.size:
            (size,), start = _SIZE.unpack_from(data, offset), offset + _SIZE.size
            if size == -1:
                if end - offset < _SIZE.size + _BIG_SIZE.size:
                    break
                (size,), start = _BIG_SIZE.unpack_from(data, start), start + _BIG_SIZE.size
            if start + size > end:
                break
            events.append(pickle.loads(data[start:start + size]))
            offset = start + size
        self._partial = data[offset:]
        return events

    def _apply(self, event: Event, finished: list[bool], now_mono: float) -> None:
        kind = event[0]
        if kind == "s":
            _, job_id, attempt, started_ms, timeout_s, held, done, owed = event
            self._copy_ack(owed)
            if done is not None:
                self._finish(done, finished)
            self.job = RunningJob(job_id, attempt, started_ms, timeout_s, now_mono)
            self.held = list(held)
        elif kind == "f":
            self._finish(event[1:4], finished)
            self._copy_ack(event[4])
        elif kind == "r":  # the executor handed its prefetched messages back itself
            self.held = []
        elif kind == "x":
            self.handed_acks.extend(event[1])
            self.job, self.held, self.ack_copies = None, [], []
        elif kind == "p":
            _, job_id, attempt, fraction, message, at_ms = event
            job = self.job
            if job is not None and (job.job_id, job.attempt) == (job_id, attempt):
                self.job = job._replace(progress=(fraction, message, at_ms))

    def _copy_ack(self, owed: tuple[bool, bytes | None]) -> None:
        """Keep the event's copy of an unconfirmed ack; drop the older ones once all are in
        Redis (a copy pushed after the executor's own push is harmless: acks are fenced by
        attempt)."""
        reset, ack = owed
        if reset:
            self.ack_copies = []
        if ack is not None:
            self.ack_copies.append(ack)

    def _finish(self, done: tuple[str, int, bool], finished: list[bool]) -> None:
        job_id, attempt, ok = done
        if self.job is not None and (self.job.job_id, self.job.attempt) == (job_id, attempt):
            self.job = None
        finished.append(bool(ok))

    def overdue(self, now_mono: float, grace_s: float) -> bool:
        """Running past its timeout plus the grace: time for the hard kill."""
        job = self.job
        return job is not None and now_mono > job.started_mono + job.timeout_s + grace_s

    def terminate(self) -> None:
        """Ask the executor to finish its job and exit (SIGTERM)."""
        self._signal(signal.SIGTERM)

    def kill(self, reason: str) -> None:
        """SIGKILL the executor. The first reason, and the job at that moment, decide the ack."""
        if self.kill_reason is None:
            self.kill_reason = reason
            self.killed_mono = time.monotonic()
            self._owed = (self.job, list(self.held))
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def alive(self) -> bool:
        return self.process.is_alive()

    def close(self) -> None:
        self.conn.close()
        self.process.close()

    def exit_acks(self, identity: Identity) -> list[dict[str, Any]]:
        """The acks owed once the process is gone (call ``read`` first)."""
        job, held = self._owed if self._owed is not None else (self.job, self.held)
        acks = []
        if job is not None:
            acks.append(self._job_ack(job, identity))
        why = ("executor stopped" if self.kill_reason in ("drain", "cold")
               else "executor died before starting it")
        acks.extend(make_ack(job_id, attempt, "rel", identity, now_ms(),
                             e=f"WorkerShutdown: prefetched message handed back unrun ({why})")
                    for job_id, attempt in held)
        return acks

    def _job_ack(self, job: RunningJob, identity: Identity) -> dict[str, Any]:
        reason, pid = self.kill_reason, self.pid
        if reason == "timeout":
            ran_s = self.killed_mono - job.started_mono
            return make_ack(job.job_id, job.attempt, "fail", identity, job.started_ms,
                            e=f"JobTimeoutException: job ran past its timeout of "
                              f"{job.timeout_s:g} s; executor pid {pid} killed after "
                              f"{ran_s:.1f} s")
        if reason == "cancel":
            return make_ack(job.job_id, job.attempt, "cancelled", identity, job.started_ms)
        if reason in ("drain", "cold"):
            why = ("not finished within the shutdown grace" if reason == "drain"
                   else "cold stop (second signal)")
            return make_ack(job.job_id, job.attempt, "rel", identity, job.started_ms,
                            e=f"WorkerShutdown: {why}; job interrupted and handed back")
        return make_ack(job.job_id, job.attempt, "fail", identity, job.started_ms,
                        e=f"ExecutorDied: executor pid {pid} {self.describe_exit()} while "
                          f"running the job")

    def describe_exit(self) -> str:
        code = self.process.exitcode
        if code is None:
            return "is still running"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"
