"""The table's transitions: one handler per record type, and the moves they share.

Transitions (``docs/wal-format.md`` has the record fields)::

    enq ──▶ pending ──disp──▶ in_flight ──ack──▶ completed
               ▲  ▲              │ fail / exp (retries left) ──▶ pending (not before nb)
               │  └──── rel ─────┤ fail / exp (none left, or final) ──▶ dead ──retry──▶ pending
               └─────────────────┘ cancel (from pending or in_flight) ──▶ cancelled
    compact: a finished job is forgotten (its id may be used again).

A handler returns False for a record that does not fit the current state (a stale ack, a
second completion, an unknown id): such records change nothing. Jobs with parents (``enqa``)
and what a parent's end does to its children are graph.py's.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

from . import events as ev
from .fields import Entry, TableFields
from .record import (
    CANCELLED,
    COMPLETED,
    DEAD,
    IN_FLIGHT,
    PENDING,
    TERMINAL,
    WAITING,
    JobRecord,
)

if TYPE_CHECKING:
    from .lanes import Lanes


class Transitions(TableFields):
    """What each record does to the table (``JobTable`` inherits it)."""

    if TYPE_CHECKING:  # defined by the other parts of the table
        def get(self, job_id: str) -> JobRecord | None: ...
        def _thaw(self, job_id: str) -> JobRecord | None: ...
        def _thaw_new(self, job_id: str, spec: str) -> JobRecord: ...
        def _make_ready(self, job: JobRecord) -> None: ...
        def _live(self, entry: Entry) -> bool: ...
        def _drop(self, entry: Entry) -> None: ...
        def _settle(self, job: JobRecord, at_ms: int) -> None: ...
        def _parents_open(self, job_id: str) -> bool: ...
        def _enline(self, queue: str, flow: list[Any] | None, entry: Entry) -> None: ...
        def _entry_flow(self, entry: Entry) -> list[Any] | None: ...
        def _lane(self, queue: str) -> Lanes: ...
        def _key_landed(self, queue: str, key: str) -> None: ...
        def _note_expiry(self, job_id: str, spec: str) -> None: ...

    def _on_enqueued(self, record: ev.Record) -> bool:
        try:
            _, job_id, queue, not_before_ms, spec = record
        except ValueError:  # a traced job (rare; the try costs the others nothing)
            _, job_id, queue, not_before_ms, spec, trace_context = record
            spec = ev.traced_spec(spec, trace_context)
        # ``job_id in self`` spelt out: replay runs this once per job in the log.
        if (job_id in self._cold or job_id in self._jobs or job_id in self._cold_done
                or job_id in self._cold_waiting):
            return False
        self.counts[PENDING] += 1
        self.queue_counts[queue][PENDING] += 1
        self.totals["enqueued"] += 1
        self._note_expiry(job_id, spec)
        if job_id in self._lingering:  # an old entry for this id may still be queued
            self._make_ready(self._thaw_new(job_id, spec))
        elif not_before_ms:
            self._cold[job_id] = spec
            self._ticket += 1
            heapq.heappush(self._delayed, (not_before_ms, self._ticket, queue, job_id))
        else:
            self._cold[job_id] = spec
            # A plain spec ends with a digit (its enqueue time): one test tells it is plain.
            flow = ev.spec_flow(spec) if spec[-2] in "]}" else None
            if flow is None or (not flow[0] and flow[2] is None):
                self._ready[queue].append(job_id)
            else:
                self._lane(queue).append(flow[0], flow[2], job_id)
        return True

    def _saw(self, at_ms: Any) -> None:
        """Note the controller time of a record that changed the table (``clock_ms``; a
        record that changes nothing is not logged, so replay would not see it). An older
        log's record may have none."""
        if at_ms.__class__ is int and at_ms > self.clock_ms:
            self.clock_ms = at_ms

    def _on_dispatched(self, record: ev.Record) -> bool:
        _, job_id, attempt, lease_deadline_ms, at_ms = record
        job = self._jobs.get(job_id) or self._thaw(job_id)
        # Dispatching an in-flight job again is the heal after Redis lost its message.
        if job is None or job.state not in (PENDING, IN_FLIGHT) or attempt != job.attempt + 1:
            return False
        if job.lingers:
            # Replaying the log: the job was dispatched by id, most likely from the head of
            # its queue; take the entry off so it does not linger until the next take.
            ready = self._ready.get(job.queue)
            if ready and ready[0] == job_id:
                ready.popleft()
                self.ready_popped[job.queue] += 1
                job.lingers = False
        self._move(job, IN_FLIGHT)
        job.attempt = attempt
        job.lease_deadline_ms = lease_deadline_ms
        job.dispatched_ms = at_ms
        job.not_before_ms = 0
        job.epoch = self.epoch  # travels in the message as "ep" (docs/protocol.md §2)
        self.in_flight[job_id] = job
        self.totals["dispatched"] += 1
        self._saw(at_ms)
        return True

    def _on_acked(self, record: ev.Record) -> bool:
        _, job_id, attempt, result, worker, host, started_ms, finished_ms, at_ms = record
        job = self._jobs.get(job_id) or self._thaw(job_id)
        # A late success of an older attempt may still complete a job that is not complete;
        # an attempt that was never dispatched (0, or past the current one) cannot.
        if job is None or job.state not in (PENDING, IN_FLIGHT) or not 1 <= attempt <= job.attempt:
            return False
        job.history.append({"n": attempt, "o": "ok", "w": worker, "h": host, "st": started_ms,
                            "ft": finished_ms})
        job.result = result
        self._finish(job, COMPLETED, at_ms or finished_ms or job.dispatched_ms or 0)
        self.totals["completed"] += 1
        return True

    def _on_failed(self, record: ev.Record) -> bool:
        (_, job_id, attempt, error, retry_at_ms, final, worker, host, started_ms, finished_ms,
         at_ms) = record[:11]
        job = self._current_attempt(job_id, attempt)
        if job is None:
            return False
        job.history.append({"n": attempt, "o": "failed", "w": worker, "h": host,
                            "st": started_ms, "ft": finished_ms, "e": error})
        if len(record) > 11:  # the optional traceback (events.failed); older logs have none
            job.history[-1]["tb"] = record[11]
        self.totals["failed"] += 1
        self._after_failure(job, error, retry_at_ms, final, at_ms or finished_ms or 0)
        self._saw(at_ms)
        return True

    def _on_expired(self, record: ev.Record) -> bool:
        _, job_id, attempt, retry_at_ms, at_ms = record
        job = self._current_attempt(job_id, attempt)
        if job is None:
            return False
        job.history.append({"n": attempt, "o": "expired", "ft": at_ms, "e": "lease expired"})
        self.totals["expired"] += 1
        self._after_failure(job, "LeaseExpired: no ack before the lease ran out", retry_at_ms,
                            False, at_ms)
        self._saw(at_ms)
        return True

    def _on_released(self, record: ev.Record) -> bool:
        _, job_id, attempt, reason, at_ms = record
        job = self._current_attempt(job_id, attempt)
        if job is None:
            return False
        job.history.append({"n": attempt, "o": "released", "ft": at_ms, "e": reason})
        self.totals["released"] += 1
        self._back_to_pending(job, 0)
        return True

    def _on_retried(self, record: ev.Record) -> bool:
        job = self.get(record[1])
        if job is None or job.state != DEAD:
            return False
        job.failures = 0
        job.finished_ms = None
        self.totals["retried"] += 1
        self._back_to_pending(job, 0)
        return True

    def _on_cancelled(self, record: ev.Record) -> bool:
        job_id, at_ms = record[1], record[2]
        job = self.get(job_id)
        if job is None or job.state not in (PENDING, IN_FLIGHT, WAITING):
            return False
        if job.state == WAITING:
            self.graph.waiting.pop(job_id, None)
        if len(record) > 3:  # a reason: "expired" (not started before its expiry)
            job.error = str(record[3])
            self.totals["expired_unstarted"] += record[3] == "expired"
        self._finish(job, CANCELLED, at_ms)
        self.totals["cancelled"] += 1
        return True

    def _on_compacted(self, record: ev.Record) -> bool:
        for job_id in record[1]:
            if job_id in self._cold:
                continue  # pending: not finished, nothing to forget
            job = self.get(job_id)
            if job is not None and job.state in TERMINAL:
                if self.graph.parents and self._parents_open(job_id):
                    continue  # see Dependencies._parents_open
                self._count(job, job.state, -1)
                del self._jobs[job_id]
                self.graph.forget(job_id)
                if job.lingers:
                    self._lingering.add(job_id)
                self.totals["compacted"] += 1
        return True

    def _on_booted(self, record: ev.Record) -> bool:
        self.epoch = max(self.epoch, record[1])
        self._saw(record[-1])
        return True

    def _on_scheduled(self, record: ev.Record) -> bool:
        _, name, fire_ms = record
        if fire_ms <= self.schedules.get(name, -1):
            return False
        self.schedules[name] = fire_ms
        return True

    def _on_due(self, record: ev.Record) -> bool:
        """Move delayed jobs due by the record's time into line; False if none was due (then
        the record is not logged: stale heap entries dropped on the way change nothing)."""
        _, at_ms = record
        delayed, moved = self._delayed, False
        while delayed and delayed[0][0] <= at_ms:
            _, _, queue, entry = heapq.heappop(delayed)
            if self._live(entry):
                self._enline(queue, self._entry_flow(entry), entry)
                moved = True
            else:
                self._drop(entry)
        if moved:  # else not logged: a replay would not see it
            self._saw(at_ms)
        return moved

    # -- transitions -----------------------------------------------------------------------

    def _current_attempt(self, job_id: str, attempt: int) -> JobRecord | None:
        job = self._jobs.get(job_id)
        if job is None or job.state != IN_FLIGHT or attempt != job.attempt:
            return None
        return job

    def _after_failure(self, job: JobRecord, error: str, retry_at_ms: int, final: bool,
                       at_ms: int) -> None:
        job.failures += 1
        job.error = error
        if final or job.failures > job.max_retries:
            self._finish(job, DEAD, at_ms)
            self.totals["dead"] += 1
        else:
            self._back_to_pending(job, retry_at_ms)

    def _back_to_pending(self, job: JobRecord, not_before_ms: int) -> None:
        self._move(job, PENDING)
        job.lease_deadline_ms = None
        job.not_before_ms = not_before_ms
        self._make_ready(job)

    def _finish(self, job: JobRecord, state: str, at_ms: int) -> None:
        self._finish_one(job, state, at_ms)
        if job.id in self.graph.children:  # one lookup for a job nobody depends on
            self._settle(job, at_ms)

    def _finish_one(self, job: JobRecord, state: str, at_ms: int) -> None:
        self._move(job, state)
        job.lease_deadline_ms = None
        job.finished_ms = at_ms
        self._finished.append((at_ms, job.id))

    def _move(self, job: JobRecord, state: str) -> None:
        # Counting is spelt out here rather than via _count: this runs for most records
        # replayed at recovery.
        old = job.state
        if old == IN_FLIGHT:
            self.in_flight.pop(job.id, None)
        flow = job.flow
        if flow is not None and flow[2] is not None and old != state:
            if old == IN_FLIGHT:
                self._key_landed(job.queue, flow[2])
            elif state == IN_FLIGHT:
                flight = self.key_flight.setdefault(job.queue, {})
                flight[flow[2]] = flight.get(flow[2], 0) + 1
        job.state = state
        counts, per_queue = self.counts, self.queue_counts[job.queue]
        counts[old] -= 1
        counts[state] += 1
        per_queue[old] -= 1
        per_queue[state] += 1

    def _count(self, job: JobRecord, state: str, delta: int) -> None:
        self.counts[state] += delta
        self.queue_counts[job.queue][state] += delta
