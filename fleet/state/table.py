"""The job table: a pure state machine. Events in, state out; no disk, sockets or clock.

Transitions (``docs/wal-format.md`` has the event fields)::

    enq ──▶ pending ──disp──▶ in_flight ──ack──▶ completed
               ▲  ▲              │ fail / exp (retries left) ──▶ pending (not before nb)
               │  └──── rel ─────┤ fail / exp (none left, or final) ──▶ dead ──retry──▶ pending
               └─────────────────┘ cancel (from pending or in_flight) ──▶ cancelled
    compact: a finished job is forgotten (its id may be used again).

``apply`` returns False for an event that does not fit the current state (a stale ack, a
second completion, an unknown id): such events change nothing. Events carry a sequence number
``s``; one at or below ``last_seq`` was applied before and is skipped, which is what makes
replaying a record twice, or a snapshot plus an overlapping log, give the same table.

FIFO within a queue: each queue keeps a deque of ``(ticket, job)`` entries in the order jobs
became ready. Entries go stale instead of being removed (a cancel or a dispatch bumps nothing:
the state check skips them), so taking work is O(1) per job.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from operator import attrgetter
from sys import intern
from typing import Any

from . import events as ev
from .job import CANCELLED, COMPLETED, DEAD, IN_FLIGHT, PENDING, STATES, TERMINAL, JobRecord

SCHEMA_VERSION = 1
_ID = attrgetter("id")
_QUEUE_AND_STATE = attrgetter("queue", "state")


class JobTable:
    """Every job the controller knows, with per-state and per-queue counts."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}
        self.in_flight: dict[str, JobRecord] = {}
        self.last_seq = 0
        self.epoch = 0
        self.schedules: dict[str, int] = {}
        self.paused: set[str] = set()
        self.counts: dict[str, int] = dict.fromkeys(STATES, 0)
        self.queue_counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
        self.totals: dict[str, int] = dict.fromkeys(
            ("enqueued", "dispatched", "completed", "failed", "expired", "released", "dead",
             "retried", "cancelled", "compacted"), 0)
        self._ready: dict[str, deque[tuple[int, JobRecord]]] = defaultdict(deque)
        self._delayed: list[tuple[int, int, int, JobRecord]] = []
        self._finished: deque[tuple[int, str]] = deque()
        self._ticket = 0
        self._handlers = {
            ev.ENQUEUED: self._on_enqueued, ev.DISPATCHED: self._on_dispatched,
            ev.ACKED: self._on_acked, ev.FAILED: self._on_failed, ev.EXPIRED: self._on_expired,
            ev.RELEASED: self._on_released, ev.RETRIED: self._on_retried,
            ev.CANCELLED: self._on_cancelled, ev.COMPACTED: self._on_compacted,
            ev.PAUSED: self._on_paused, ev.RESUMED: self._on_resumed, ev.BOOTED: self._on_booted,
            ev.SCHEDULED: self._on_scheduled,
        }

    # -- applying events -------------------------------------------------------------------

    def apply(self, event: ev.Event) -> bool:
        """Apply one event. Returns False if it was already applied or does not fit."""
        seq = event.get("s")
        if seq is not None and seq <= self.last_seq:
            return False
        handler = self._handlers.get(event.get("t"))
        if handler is None or not handler(event):
            return False
        if seq is not None:
            self.last_seq = seq
        return True

    def replay(self, events: list[ev.Event], last_seen: int) -> int:
        """Apply logged events numbered after ``last_seen``, in order: recovery's hot loop,
        ``apply`` without its per-event call (a million records cost a second less).

        Returns the last sequence number seen.

        Raises:
            ValueError: the numbers skip (records are missing) or an event type is unknown
                (a newer fleet wrote it); the message says which.
        """
        handlers = self._handlers
        for event in events:
            seq = event["s"]
            if seq <= last_seen:
                continue
            if seq != last_seen + 1:
                raise ValueError(f"records {last_seen + 1}..{seq - 1} are missing")
            handler = handlers.get(event["t"])
            if handler is None:
                raise ValueError(f"record {seq} has unknown type {event['t']!r}")
            if handler(event):
                self.last_seq = seq
            last_seen = seq
        return last_seen

    def apply_all(self, events: Iterable[ev.Event]) -> int:
        """Apply events in order; returns how many changed the table."""
        return sum(1 for event in events if self.apply(event))

    def _on_enqueued(self, e: ev.Event) -> bool:
        job_id, jobs = e["id"], self.jobs
        if job_id in jobs:
            return False
        # Memory per pending job: the queue and function names are interned (a million jobs
        # share a handful of each).
        job = JobRecord(job_id, intern(e["q"]), intern(e["f"]), e["a"], e["k"], e["to"],
                        e["mr"], PENDING, 0, 0, e["nb"], None, e["ts"])
        jobs[job_id] = job
        self.counts[PENDING] += 1
        self.queue_counts[job.queue][PENDING] += 1
        self.totals["enqueued"] += 1
        if job.not_before_ms:
            self._make_ready(job)
        else:  # _make_ready spelt out: replay runs this once per job in the log
            ticket = job.ticket = self._ticket = self._ticket + 1
            self._ready[job.queue].append((ticket, job))
        return True

    def _on_dispatched(self, e: ev.Event) -> bool:
        job = self.jobs.get(e["id"])
        # Dispatching an in-flight job again is the heal after Redis lost its message.
        if job is None or job.state not in (PENDING, IN_FLIGHT) or e["n"] != job.attempt + 1:
            return False
        self._move(job, IN_FLIGHT)
        job.attempt = e["n"]
        job.lease_deadline_ms = e["ld"]
        job.dispatched_ms = e["ts"]
        job.not_before_ms = 0
        self.in_flight[job.id] = job
        self.totals["dispatched"] += 1
        return True

    def _on_acked(self, e: ev.Event) -> bool:
        job = self.jobs.get(e["id"])
        # A late success of an older attempt may still complete a job that is not complete;
        # an attempt that was never dispatched (0, or past the current one) cannot.
        if job is None or job.state not in (PENDING, IN_FLIGHT) or not 1 <= e["n"] <= job.attempt:
            return False
        job.history.append({"n": e["n"], "o": "ok", "w": e["w"], "h": e["h"], "st": e["st"],
                            "ft": e["ft"]})
        job.result = e["r"]
        self._finish(job, COMPLETED, e.get("ts") or e["ft"] or job.dispatched_ms or 0)
        self.totals["completed"] += 1
        return True

    def _on_failed(self, e: ev.Event) -> bool:
        job = self._current_attempt(e)
        if job is None:
            return False
        job.history.append({"n": e["n"], "o": "failed", "w": e["w"], "h": e["h"],
                            "st": e["st"], "ft": e["ft"], "e": e["e"]})
        self.totals["failed"] += 1
        self._after_failure(job, e["e"], e["nb"], e["fin"], e.get("ts") or e["ft"] or 0)
        return True

    def _on_expired(self, e: ev.Event) -> bool:
        job = self._current_attempt(e)
        if job is None:
            return False
        job.history.append({"n": e["n"], "o": "expired", "ft": e["ts"], "e": "lease expired"})
        self.totals["expired"] += 1
        self._after_failure(job, "LeaseExpired: no ack before the lease ran out", e["nb"], False,
                            e["ts"])
        return True

    def _on_released(self, e: ev.Event) -> bool:
        job = self._current_attempt(e)
        if job is None:
            return False
        job.history.append({"n": e["n"], "o": "released", "ft": e["ts"], "e": e["why"]})
        self.totals["released"] += 1
        self._back_to_pending(job, 0)
        return True

    def _on_retried(self, e: ev.Event) -> bool:
        job = self.jobs.get(e["id"])
        if job is None or job.state != DEAD:
            return False
        job.failures = 0
        job.finished_ms = None
        self.totals["retried"] += 1
        self._back_to_pending(job, 0)
        return True

    def _on_cancelled(self, e: ev.Event) -> bool:
        job = self.jobs.get(e["id"])
        if job is None or job.state not in (PENDING, IN_FLIGHT):
            return False
        self._finish(job, CANCELLED, e["ts"])
        self.totals["cancelled"] += 1
        return True

    def _on_compacted(self, e: ev.Event) -> bool:
        for job_id in e["ids"]:
            job = self.jobs.get(job_id)
            if job is not None and job.state in TERMINAL:
                self._count(job, job.state, -1)
                del self.jobs[job_id]
                self.totals["compacted"] += 1
        return True

    def _on_paused(self, e: ev.Event) -> bool:
        self.paused.add(e["q"])
        return True

    def _on_resumed(self, e: ev.Event) -> bool:
        self.paused.discard(e["q"])
        return True

    def _on_booted(self, e: ev.Event) -> bool:
        self.epoch = max(self.epoch, e["epoch"])
        return True

    def _on_scheduled(self, e: ev.Event) -> bool:
        if e["at"] <= self.schedules.get(e["name"], -1):
            return False
        self.schedules[e["name"]] = e["at"]
        return True

    # -- transitions -----------------------------------------------------------------------

    def _current_attempt(self, e: ev.Event) -> JobRecord | None:
        job = self.jobs.get(e["id"])
        if job is None or job.state != IN_FLIGHT or e["n"] != job.attempt:
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
        job.state = state
        counts, per_queue = self.counts, self.queue_counts[job.queue]
        counts[old] -= 1
        counts[state] += 1
        per_queue[old] -= 1
        per_queue[state] += 1

    def _count(self, job: JobRecord, state: str, delta: int) -> None:
        self.counts[state] += delta
        self.queue_counts[job.queue][state] += delta

    def _make_ready(self, job: JobRecord) -> None:
        ticket = self._ticket = self._ticket + 1
        job.ticket = ticket
        if job.not_before_ms:
            heapq.heappush(self._delayed, (job.not_before_ms, ticket, ticket, job))
        else:
            self._ready[job.queue].append((ticket, job))

    # -- queries (they never change the logical state) --------------------------------------

    def take_ready(self, queue: str, limit: int, now_ms: int) -> list[JobRecord]:
        """Up to ``limit`` pending jobs of ``queue`` that may run at ``now_ms``, oldest first.

        The caller must dispatch every job returned: they leave the ready index.
        """
        if queue in self.paused or limit <= 0:
            return []
        self._promote_due(now_ms)
        ready, taken = self._ready.get(queue), []
        while ready and len(taken) < limit:
            ticket, job = ready.popleft()
            if job.ticket == ticket and job.state == PENDING:
                taken.append(job)
        return taken

    def ready_queues(self, now_ms: int) -> list[str]:
        """Queues that have pending work due at ``now_ms`` and are not paused."""
        self._promote_due(now_ms)
        return [q for q, entries in self._ready.items() if entries and q not in self.paused]

    def next_due_ms(self) -> int | None:
        """When the earliest delayed job becomes due, if any."""
        while self._delayed:
            _, _, ticket, job = self._delayed[0]
            if job.ticket == ticket and job.state == PENDING:
                return job.not_before_ms
            heapq.heappop(self._delayed)
        return None

    def oldest_ready_enqueued_ms(self) -> int | None:
        """Enqueue time of the oldest job at the head of any ready queue (for status)."""
        heads = []
        for entries in self._ready.values():
            for ticket, job in entries:
                if job.ticket == ticket and job.state == PENDING:
                    heads.append(job.enqueued_ms)
                    break
        return min(heads, default=None)

    def _promote_due(self, now_ms: int) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now_ms:
            _, _, ticket, job = heapq.heappop(delayed)
            if job.ticket == ticket and job.state == PENDING:
                self._ready[job.queue].append((ticket, job))

    def finished_before(self, cutoff_ms: int, limit: int) -> list[str]:
        """Ids of terminal jobs finished before ``cutoff_ms`` (candidates for compaction)."""
        found: list[str] = []
        while self._finished and self._finished[0][0] < cutoff_ms and len(found) < limit:
            at_ms, job_id = self._finished.popleft()
            job = self.jobs.get(job_id)
            if job is not None and job.state in TERMINAL and job.finished_ms == at_ms:
                found.append(job_id)
        return found

    def stats(self) -> dict[str, Any]:
        """Counts per state, per queue and state, and running totals."""
        queues = {q: dict(c) for q, c in self.queue_counts.items() if any(c.values())}
        return {"states": dict(self.counts), "queues": queues, "totals": dict(self.totals),
                "paused": sorted(self.paused), "last_seq": self.last_seq, "epoch": self.epoch}

    def dead_jobs(self) -> list[JobRecord]:
        """Jobs in the dead-letter set, oldest failure first."""
        dead = [job for job in self.jobs.values() if job.state == DEAD]
        return sorted(dead, key=lambda job: job.finished_ms or 0)

    # -- invariants ------------------------------------------------------------------------

    def validate(self) -> list[str]:
        """Every invariant violation found; an empty list means the table is sound."""
        problems: list[str] = []
        counts = dict.fromkeys(STATES, 0)
        queue_counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
        for job_id, job in self.jobs.items():
            if job.state not in counts:
                problems.append(f"{job_id}: unknown state {job.state!r}")
                continue
            counts[job.state] += 1
            queue_counts[job.queue][job.state] += 1
            problems.extend(_job_problems(job_id, job, self.in_flight))
        problems.extend(f"{job_id}: in the in-flight index but {job.state}"
                        for job_id, job in self.in_flight.items()
                        if job.state != IN_FLIGHT or self.jobs.get(job_id) is not job)
        problems.extend(self._ready_index_problems())
        if counts != self.counts:
            problems.append(f"state counters {self.counts} disagree with the jobs {counts}")
        mine = {q: c for q, c in self.queue_counts.items() if any(c.values())}
        if mine != {q: c for q, c in queue_counts.items() if any(c.values())}:
            problems.append("per-queue counters disagree with the jobs")
        return problems

    def _ready_index_problems(self) -> list[str]:
        problems, seen = [], set()
        live = [(t, j) for entries in self._ready.values() for t, j in entries]
        live += [(t, j) for _, _, t, j in self._delayed]
        for ticket, job in live:
            if job.ticket != ticket or job.state != PENDING:
                continue
            if job.id in seen:
                problems.append(f"{job.id}: queued twice for dispatch")
            seen.add(job.id)
            if self.jobs.get(job.id) is not job:
                problems.append(f"{job.id}: queued for dispatch but not in the table")
        return problems

    # -- snapshot form ---------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Everything needed to rebuild the table (what a snapshot stores).

        Jobs go out in ticket order, the order they last became ready, so that ``load`` queues
        pending jobs in the same FIFO order (a retried or released job stays behind the jobs
        that were waiting before it came back). The result is a copy as of now: later events
        do not change it.
        """
        jobs = sorted(self.jobs.values(), key=_ticket_of)
        return {"version": SCHEMA_VERSION, "last_seq": self.last_seq, "epoch": self.epoch,
                "paused": sorted(self.paused), "totals": dict(self.totals),
                "schedules": dict(self.schedules), "jobs": [job.to_row() for job in jobs]}

    @classmethod
    def load(cls, data: dict[str, Any]) -> JobTable:
        """Rebuild a table from ``dump()`` output."""
        table = cls()
        table.last_seq = data["last_seq"]
        table.epoch = data["epoch"]
        table.paused = set(data["paused"])
        table.totals.update(data["totals"])
        table.schedules = dict(data.get("schedules", {}))
        # Bulk steps (comprehensions, one Counter) rather than a call per job: this is most
        # of the time recovery spends after decoding a snapshot.
        # (map/zip with attrgetter run in C, without a Python frame per job.)
        jobs = [JobRecord(*row) for row in data["jobs"]]
        table.jobs = dict(zip(map(_ID, jobs), jobs, strict=True))
        for (queue, state), count in Counter(map(_QUEUE_AND_STATE, jobs)).items():
            table.counts[state] += count
            table.queue_counts[queue][state] += count
        table._index(jobs)
        return table

    def _index(self, jobs: list[JobRecord]) -> None:
        """Ready, delayed, in-flight and finished indexes of freshly loaded jobs, in order."""
        ready, delayed, in_flight, finished = self._ready, self._delayed, self.in_flight, []
        ticket = self._ticket
        for job in jobs:
            state = job.state
            if state == PENDING:
                ticket += 1
                job.ticket = ticket
                if job.not_before_ms:
                    delayed.append((job.not_before_ms, ticket, ticket, job))
                else:
                    ready[job.queue].append((ticket, job))
            elif state == IN_FLIGHT:
                in_flight[job.id] = job
            elif job.finished_ms is not None:
                finished.append((job.finished_ms, job.id))
        self._ticket = ticket
        heapq.heapify(delayed)
        finished.sort()
        self._finished.extend(finished)

    def canonical(self) -> dict[str, Any]:
        """A form for comparing two tables: jobs sorted by id, indexes left out."""
        data = self.dump()
        data["jobs"] = sorted(data["jobs"], key=lambda row: row[0])
        return data


def _ticket_of(job: JobRecord) -> int:
    return job.ticket


def _job_problems(job_id: str, job: JobRecord, in_flight: dict[str, JobRecord]) -> list[str]:
    problems = []
    if job.id != job_id:
        problems.append(f"{job_id}: stored under another id ({job.id})")
    if job.state == IN_FLIGHT:
        if job.lease_deadline_ms is None:
            problems.append(f"{job_id}: in flight without a lease")
        if job_id not in in_flight:
            problems.append(f"{job_id}: in flight but missing from the in-flight index")
        if job.attempt < 1:
            problems.append(f"{job_id}: in flight with attempt {job.attempt}")
    elif job.lease_deadline_ms is not None:
        problems.append(f"{job_id}: {job.state} but still holds a lease")
    if job.state in TERMINAL and job.finished_ms is None:
        problems.append(f"{job_id}: {job.state} without a finish time")
    latest = max((entry.get("n", 0) for entry in job.history), default=0)
    if latest > job.attempt:
        problems.append(f"{job_id}: attempts go backwards (attempt {latest} recorded, "
                        f"current {job.attempt})")
    if job.failures > job.attempt:
        problems.append(f"{job_id}: {job.failures} failures in {job.attempt} attempts")
    if job.state == COMPLETED and not any(entry.get("o") == "ok" for entry in job.history):
        problems.append(f"{job_id}: completed without a successful attempt")
    if job.state == DEAD and job.error is None:
        problems.append(f"{job_id}: dead without an error")
    return problems
