"""Dispatch: pending jobs leave as messages on short per-queue ready lists.

Each ready list is kept at most ``window`` long so that a lease is not spent waiting in Redis
and a cancel, a pause or a higher-priority job still acts late. The window is sized to the
live workers (``WINDOW_PER_EXECUTOR`` messages each), and for a queue of short jobs to its
recent dispatch rate: ``QUEUED_WORK_S`` worth of messages, so that executors finishing jobs
every few hundred microseconds do not run dry between two controller iterations while a
message still waits only milliseconds in Redis. The DISPATCH event is recorded
now; the message is pushed only after the commit (the caller's Outbox).
"""

from __future__ import annotations

from typing import Any

from ..protocol.dispatch import encode_dispatch
from ..protocol.signing import Seal
from ..state import JobRecord
from ..state import events as ev
from .journal import Journal
from .limiter import EXPIRED, Buckets
from .options import DispatchOptions
from .sightings import Sightings

MIN_WINDOW = 64
WINDOW_PER_EXECUTOR = 8
MAX_WINDOW = 2048
QUEUED_WORK_S = 0.05
RATE_EVERY_MS = 100  # often enough that a drain starting now is seen within 0.1 s
MAX_EXPIRED_PER_STEP = 1000  # expired jobs cancelled per step, wherever they wait


def encode_message(job: JobRecord, attempt: int, dispatched_ms: int, seal: Seal | None = None,
                   parent_results: dict[str, Any] | None = None) -> bytes:
    """The ready-list message for one attempt (``protocol.dispatch``), sealed with the
    dispatch time when a key is set: deterministic, so a stale copy can be LREMed."""
    body = encode_dispatch(job, attempt, dispatched_ms, parent_results)
    return seal.seal(body, dispatched_ms) if seal else body


class Dispatcher:
    """Fills ready lists up to their window with newly leased jobs."""

    def __init__(self, journal: Journal, options: DispatchOptions) -> None:
        self.journal = journal
        self.options = options
        self.lease_ms = int(options.lease_s * 1000)
        self.seal = options.seal
        self.dispatched_by_queue: dict[str, int] = {}
        self.rate_per_s: dict[str, float] = {}
        self.total_rate_per_s = 0.0  # of every queue
        self._counted: dict[str, int] = {}
        self._measured_ms = 0
        self.sightings: Sightings | None = None  # told of every message about to be pushed
        self.buckets = Buckets()

    def window(self, executors: int, queue: str | None = None) -> int:
        """How many messages the ready list of ``queue`` may hold."""
        if self.options.ready_window:
            return self.options.ready_window
        by_workers = max(MIN_WINDOW, WINDOW_PER_EXECUTOR * executors)
        by_rate = int(self.rate_per_s.get(queue, 0.0) * QUEUED_WORK_S) if queue else 0
        return max(by_workers, min(MAX_WINDOW, by_rate))

    def _measure(self, now_ms: int) -> None:
        """Dispatches per second of each queue over the last ``RATE_EVERY_MS`` or so."""
        elapsed_ms = now_ms - self._measured_ms
        if elapsed_ms < RATE_EVERY_MS:
            return
        counted = self._counted
        self.rate_per_s = {queue: (total - counted.get(queue, 0)) * 1000 / elapsed_ms
                           for queue, total in self.dispatched_by_queue.items()}
        self.total_rate_per_s = sum(self.rate_per_s.values())
        self._counted = dict(self.dispatched_by_queue)
        self._measured_ms = now_ms

    def fill(self, ready_lengths: dict[str, int], executors: int, now_ms: int
             ) -> dict[str, list[bytes]]:
        """Lease jobs into every queue with room; returns messages per queue."""
        self._measure(now_ms)
        table = self.journal.table
        if table.has_due(now_ms):  # delayed jobs and retries whose time came join their lines
            self.journal.record(ev.due(now_ms))
        for job_id in table.expired_unstarted(now_ms, MAX_EXPIRED_PER_STEP):  # anywhere
            self.journal.record(ev.cancelled(job_id, now_ms, EXPIRED))
        out: dict[str, list[bytes]] = {}
        for queue, length in ready_lengths.items():
            room = self.window(executors, queue) - length
            bucket = self.buckets.bucket(queue, table.limits.get(queue), now_ms)
            if bucket is not None:
                room = min(room, bucket.available(now_ms))
            jobs, expired = table.take(queue, room, now_ms)
            for job in expired:  # not started before its expiry: it never will be
                self.journal.record(ev.cancelled(job.id, now_ms, EXPIRED))
            if jobs:
                if bucket is not None:
                    bucket.spend(len(jobs))
                out[queue] = [self.lease(job, now_ms) for job in jobs]
                self.dispatched_by_queue[queue] = (
                    self.dispatched_by_queue.get(queue, 0) + len(jobs))
        return out

    def lease(self, job: JobRecord, now_ms: int) -> bytes:
        """Record the next attempt of ``job`` and return its message."""
        attempt = job.attempt + 1
        self.journal.record(ev.dispatched(job.id, attempt, now_ms + self.lease_ms, now_ms))
        if self.sightings is not None:
            self.sightings.leased(job.queue, job.id, attempt)
        return self.message(job, attempt, now_ms)

    def message(self, job: JobRecord, attempt: int, dispatched_ms: int) -> bytes:
        """The message of attempt ``attempt`` as it was (or is) pushed: to send, find or
        remove it."""
        results = self.journal.table.graph.results
        return encode_message(job, attempt, dispatched_ms, self.seal,
                              results.get(job.id) if results else None)
