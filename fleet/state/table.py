"""The job table: a pure state machine. Events in, state out; no disk, sockets or clock.

Transitions (``docs/wal-format.md`` has the record fields)::

    enq ──▶ pending ──disp──▶ in_flight ──ack──▶ completed
               ▲  ▲              │ fail / exp (retries left) ──▶ pending (not before nb)
               │  └──── rel ─────┤ fail / exp (none left, or final) ──▶ dead ──retry──▶ pending
               └─────────────────┘ cancel (from pending or in_flight) ──▶ cancelled
    compact: a finished job is forgotten (its id may be used again).

Events are the positional records of ``events``. ``apply`` returns False for one that does not
fit the current state (a stale ack, a second completion, an unknown id): such events change
nothing. A record numbered at or below ``last_seq`` was applied before and is skipped, which
is what makes replaying a record twice, or a snapshot plus an overlapping log, give the same
table.

Cold jobs. Recovery cost is memory: every object built while reading a log or a snapshot is
a fresh page touched (about a second per GB here). So a job nobody has touched since it was
enqueued stays as its spec text in ``_cold``, and a finished job loaded from a snapshot as its
row text in ``_cold_done``, and a waiting job nothing has touched since it was accepted as its
spec text in ``_cold_waiting``; the first read or event that needs it turns it into a
JobRecord in ``_jobs`` (``_thaw``). A backlog of a million pending jobs is a million strings,
and so is a million jobs waiting on their parents.

FIFO within a queue: each queue keeps a deque of entries in the order jobs became ready, and
delayed jobs wait in a heap of ``(not_before_ms, order, queue, entry)`` until a ``due`` record
moves them into line; that record is logged, so replay rebuilds the same order. A cold
job's entry is its id; a JobRecord put back in line gets a ``(ticket, job)`` entry. Entries go
stale instead of being removed, so taking work is O(1) per job: an id entry is live while its
job is cold, or thawed (``lingers``) and still pending with ticket 0; a ``(ticket, job)``
entry while the job is pending with that ticket. An id compacted while its stale entry may
still be queued goes into ``_lingering``, and a new job under that id is queued by ticket, so
the old entry can never stand for it.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Iterator, Mapping
from typing import Any, TypedDict

import orjson

from . import events as ev
from .graph import LONE, Dependencies, Graph
from .job import (
    CANCELLED,
    COMPLETED,
    DEAD,
    IN_FLIGHT,
    PENDING,
    ROW_FIELDS,
    STATES,
    TERMINAL,
    WAITING,
    JobRecord,
)

# 3: waiting jobs and the dependency graph (2 loads as a graph-less 3); 4: untouched waiting
# jobs as spec text (``waiting_cold``), and a job's spec and row may end with its trace
# context (3 loads as it is: a table with every waiting job a row, and no trace context).
SCHEMA_VERSION = 4
Entry = Any  # a cold job's id, or (ticket, JobRecord)


class ReadySection(TypedDict):
    """One queue's pending jobs in a snapshot (``JobTable.dump``)."""

    cold: dict[str, str]
    rows: list[list[Any]]


class JobTable(Dependencies):
    """Every job the controller knows, with per-state and per-queue counts."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self.graph = Graph()
        self._cold: dict[str, str] = {}
        self._cold_done: dict[str, int] = {}
        # spec text, then NUL and the parent's id for a child of one parent (see Dependencies)
        self._cold_waiting: dict[str, str] = {}
        self._done_rows = b""
        self._done_base = 0
        self._cold_dead: list[str] = []
        self._lingering: set[str] = set()
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
        self._ready: dict[str, deque[Entry]] = defaultdict(deque)
        self._delayed: list[tuple[int, int, str, Entry]] = []
        self._finished: deque[tuple[int, str]] = deque()
        # Entries ever taken off the front of each ready line and of ``_finished``: a
        # listing's cursor is a position counted from the first entry, so it stays put while
        # the front moves (fleet/state/listing.py).
        self.ready_popped: defaultdict[str, int] = defaultdict(int)
        self.finished_popped = 0
        self._ticket = 0
        self._handlers = {
            ev.ENQUEUED: self._on_enqueued, ev.DISPATCHED: self._on_dispatched,
            ev.ACKED: self._on_acked, ev.FAILED: self._on_failed, ev.EXPIRED: self._on_expired,
            ev.RELEASED: self._on_released, ev.RETRIED: self._on_retried,
            ev.CANCELLED: self._on_cancelled, ev.COMPACTED: self._on_compacted,
            ev.PAUSED: self._on_paused, ev.RESUMED: self._on_resumed, ev.BOOTED: self._on_booted,
            ev.SCHEDULED: self._on_scheduled, ev.DUE: self._on_due,
            ev.ENQUEUED_AFTER: self._on_enqueued_after,
        }

    # -- reading jobs ----------------------------------------------------------------------

    @property
    def jobs(self) -> Mapping[str, JobRecord]:
        """Every job by id, as a read-only mapping (reading a cold job thaws it)."""
        return _JobsView(self)

    def get(self, job_id: Any) -> JobRecord | None:
        """The job with this id, or None."""
        job = self._jobs.get(job_id)
        return job if job is not None else self._thaw(job_id)

    def __len__(self) -> int:
        return (len(self._jobs) + len(self._cold) + len(self._cold_done)
                + len(self._cold_waiting))

    def __contains__(self, job_id: Any) -> bool:
        return (job_id in self._jobs or job_id in self._cold or job_id in self._cold_done
                or job_id in self._cold_waiting)

    def _thaw(self, job_id: Any) -> JobRecord | None:
        spec = self._cold.pop(job_id, None)
        if spec is not None:
            job = JobRecord.from_spec(job_id, spec)
        elif job_id in self._cold_waiting:
            spec, lone, parent = self._cold_waiting.pop(job_id).partition(LONE)
            if lone:
                self.graph.parents[job_id] = parent
            job = _waiting_record(job_id, spec)
        else:
            start = self._cold_done.pop(job_id, None)
            if start is None:
                return None
            job = JobRecord(*orjson.loads(self._done_row(start)))
            if not self._cold_done:
                self._done_rows = b""  # the snapshot's rows are all thawed: let them go
        self._jobs[job_id] = job
        return job

    def _done_row(self, start: int) -> memoryview:
        """The row text of a cold finished job: from its offset to the next newline."""
        rows, start = self._done_rows, self._done_base + start
        return memoryview(rows)[start:rows.index(b"\n", start)]

    def all_jobs(self) -> Iterator[JobRecord]:
        """Every job; a cold one as a fresh copy that is not kept (for checks and tools, not
        for hot paths: nothing thaws, so the table's structure stays as it was)."""
        yield from self._jobs.values()
        for job_id, spec in self._cold.items():
            yield JobRecord.from_spec(job_id, spec)
        for job_id, value in self._cold_waiting.items():
            yield _waiting_record(job_id, _cold_spec(value))
        for start in self._cold_done.values():
            yield JobRecord(*orjson.loads(self._done_row(start)))

    # -- applying events -------------------------------------------------------------------

    def apply(self, record: ev.Record, seq: int | None = None) -> bool:
        """Apply one record, numbered ``seq`` if it is logged. False if it was already applied
        or does not fit."""
        if seq is not None and seq <= self.last_seq:
            return False
        handler = self._handlers.get(record[0])
        if handler is None or not handler(record):
            return False
        if seq is not None:
            self.last_seq = seq
        return True

    def replay(self, records: list[ev.Record], first_seq: int, last_seen: int) -> int:
        """Apply logged records numbered ``first_seq`` on, skipping those at or below
        ``last_seen``: recovery's hot loop, ``apply`` without its per-record call.

        Returns the last sequence number seen.

        Raises:
            ValueError: the numbers skip (records are missing), a record has an unknown type
                (a newer fleet wrote it) or the wrong fields; the message says which.
        """
        if first_seq > last_seen + 1:
            raise ValueError(f"records {last_seen + 1}..{first_seq - 1} are missing")
        handlers = self._handlers
        seq = first_seq - 1
        for record in records:
            seq += 1
            if seq <= last_seen:
                continue
            handler = handlers.get(record[0]) if record.__class__ is list and record else None
            if handler is None:
                raise ValueError(f"record {seq} is not a record of a known type: "
                                 f"{str(record)[:60]}")
            try:
                if handler(record):
                    self.last_seq = seq
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                raise ValueError(f"record {seq} has the wrong fields: {str(record)[:60]}"
                                 ) from None
            last_seen = seq
        return last_seen

    def apply_all(self, records: list[tuple[ev.Record, int | None]]) -> int:
        """Apply ``(record, seq)`` pairs in order; returns how many changed the table."""
        return sum(1 for record, seq in records if self.apply(record, seq))

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
        if job_id in self._lingering:  # an old entry for this id may still be queued
            self._make_ready(self._thaw_new(job_id, spec))
        elif not_before_ms:
            self._cold[job_id] = spec
            self._ticket += 1
            heapq.heappush(self._delayed, (not_before_ms, self._ticket, queue, job_id))
        else:
            self._cold[job_id] = spec
            self._ready[queue].append(job_id)
        return True

    def _thaw_new(self, job_id: str, spec: str) -> JobRecord:
        job = self._jobs[job_id] = JobRecord.from_spec(job_id, spec)
        job.lingers = False
        return job

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
        _, job_id, at_ms = record
        job = self.get(job_id)
        if job is None or job.state not in (PENDING, IN_FLIGHT, WAITING):
            return False
        if job.state == WAITING:
            self.graph.waiting.pop(job_id, None)
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

    def _on_paused(self, record: ev.Record) -> bool:
        self.paused.add(record[1])
        return True

    def _on_resumed(self, record: ev.Record) -> bool:
        self.paused.discard(record[1])
        return True

    def _on_booted(self, record: ev.Record) -> bool:
        self.epoch = max(self.epoch, record[1])
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
                self._ready[queue].append(entry)
                moved = True
            else:
                self._drop(entry)
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
            heapq.heappush(self._delayed, (job.not_before_ms, ticket, job.queue, (ticket, job)))
        else:
            self._ready[job.queue].append((ticket, job))

    # -- the ready index -------------------------------------------------------------------

    def _live(self, entry: Entry) -> bool:
        """Whether a ready or delayed entry still stands for a pending job (nothing thaws)."""
        if entry.__class__ is tuple:
            ticket: int
            queued: JobRecord
            ticket, queued = entry
            return queued.ticket == ticket and queued.state == PENDING
        if entry in self._cold:
            return True
        job = self._jobs.get(entry)
        return job is not None and job.lingers and job.ticket == 0 and job.state == PENDING

    def _take(self, entry: Entry) -> JobRecord | None:
        """The pending job a live entry stands for (thawed, its id entry used up); None if
        the entry is stale."""
        if not self._live(entry):
            self._drop(entry)
            return None
        if entry.__class__ is tuple:
            queued: JobRecord = entry[1]
            return queued
        # Live, so the id is thawed or cold: one of the two finds it. (Not a cast: a call
        # per job taken.)
        job: JobRecord = self._jobs.get(entry) or self._thaw(entry)  # type: ignore[assignment]
        job.lingers = False
        return job

    def take_ready(self, queue: str, limit: int) -> list[JobRecord]:
        """Up to ``limit`` pending jobs from the front of ``queue``'s line, oldest first.

        The caller must dispatch every job returned: they leave the ready index. Delayed jobs
        join a line only through a logged ``due`` record (``has_due``).
        """
        if queue in self.paused or limit <= 0:
            return []
        ready = self._ready.get(queue)
        if not ready:
            return []
        taken: list[JobRecord] = []
        before = len(ready)
        while ready and len(taken) < limit:
            job = self._take(ready.popleft())
            if job is not None:
                taken.append(job)
        self.ready_popped[queue] += before - len(ready)
        return taken

    def ready_queues(self) -> list[str]:
        """Queues with jobs in line that are not paused."""
        return [q for q, entries in self._ready.items() if entries and q not in self.paused]

    def has_due(self, now_ms: int) -> bool:
        """Whether a delayed job's time has come by ``now_ms``: record ``events.due(now_ms)``
        to move it into line. (Moving it without a record would make the order of the line
        depend on when the table was asked, which the log cannot reproduce.)"""
        due = self.next_due_ms()
        return due is not None and due <= now_ms

    def next_due_ms(self) -> int | None:
        """When the earliest delayed job becomes due, if any."""
        while self._delayed:
            not_before_ms, _, _, entry = self._delayed[0]
            if self._live(entry):
                return not_before_ms
            self._drop(heapq.heappop(self._delayed)[3])
        return None

    def oldest_ready_enqueued_ms(self) -> int | None:
        """Enqueue time of the oldest job at the head of any ready queue (for status)."""
        heads = []
        for entries in self._ready.values():
            for entry in entries:
                if self._live(entry):
                    heads.append(self._enqueued_ms(entry))
                    break
        return min(heads, default=None)

    def _enqueued_ms(self, entry: Entry) -> int:
        if entry.__class__ is tuple:
            queued: JobRecord = entry[1]
            return queued.enqueued_ms
        spec = self._cold.get(entry)
        if spec is None:
            return self._jobs[entry].enqueued_ms
        enqueued_ms: int = orjson.loads(spec)[7]
        return enqueued_ms

    def _drop(self, entry: Entry) -> None:
        """Forget a stale entry: if it is an id left behind by a compacted job, that job's id
        may now be queued by id again."""
        if entry.__class__ is not tuple:
            self._lingering.discard(entry)

    def last_finished_ms(self) -> int | None:
        """The finish time of the job that finished last (what retention counts from)."""
        return self._finished[-1][0] if self._finished else None

    def finished_count(self) -> int:
        """How many entries wait in the finish-order line (stale ones included)."""
        return len(self._finished)

    def finished_before(self, cutoff_ms: int, limit: int, entries: int | None = None
                        ) -> list[str]:
        """Ids of terminal jobs finished before ``cutoff_ms`` (candidates for compaction), at
        most ``limit``, from at most ``entries`` entries off the front of the finish-order
        line (stale ones included; None: no bound)."""
        found: list[str] = []
        before = len(self._finished)
        keep = before - entries if entries is not None else 0
        while (len(self._finished) > keep and self._finished[0][0] < cutoff_ms
               and len(found) < limit):
            at_ms, job_id = self._finished.popleft()
            if job_id in self._cold_done:  # untouched since the snapshot: still as it was
                found.append(job_id)
                continue
            job = self._jobs.get(job_id)
            if job is not None and job.state in TERMINAL and job.finished_ms == at_ms:
                found.append(job_id)
        self.finished_popped += before - len(self._finished)
        return found

    def stats(self) -> dict[str, Any]:
        """Counts per state, per queue and state, and running totals."""
        queues = {q: dict(c) for q, c in self.queue_counts.items() if any(c.values())}
        return {"states": dict(self.counts), "queues": queues, "totals": dict(self.totals),
                "paused": sorted(self.paused), "last_seq": self.last_seq, "epoch": self.epoch}

    def dead_jobs(self) -> list[JobRecord]:
        """Jobs in the dead-letter set, oldest failure first."""
        for job_id in self._cold_dead:
            self.get(job_id)
        self._cold_dead = []
        dead = [job for job in self._jobs.values() if job.state == DEAD]
        return sorted(dead, key=lambda job: job.finished_ms or 0)

    # -- invariants ------------------------------------------------------------------------

    def validate(self) -> list[str]:
        """Every invariant violation found; an empty list means the table is sound."""
        problems: list[str] = []
        counts = dict.fromkeys(STATES, 0)
        queue_counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
        pending: set[str] = set()
        for job in self.all_jobs():
            if job.state not in counts:
                problems.append(f"{job.id}: unknown state {job.state!r}")
                continue
            counts[job.state] += 1
            queue_counts[job.queue][job.state] += 1
            if job.state == PENDING:
                pending.add(job.id)
            problems.extend(_job_problems(job, self.in_flight))
        problems.extend(f"{job_id}: stored under another id ({job.id})"
                        for job_id, job in self._jobs.items() if job.id != job_id)
        problems.extend(f"{job_id}: both cold and thawed"
                        for job_id in self._jobs.keys() & (self._cold.keys()
                                                           | self._cold_done.keys()
                                                           | self._cold_waiting.keys()))
        problems.extend(f"{job_id}: in the in-flight index but {job.state}"
                        for job_id, job in self.in_flight.items()
                        if job.state != IN_FLIGHT or self._jobs.get(job_id) is not job)
        problems.extend(self._ready_index_problems(pending))
        problems.extend(self._graph_problems())
        if counts != self.counts:
            problems.append(f"state counters {self.counts} disagree with the jobs {counts}")
        mine = {q: c for q, c in self.queue_counts.items() if any(c.values())}
        if mine != {q: c for q, c in queue_counts.items() if any(c.values())}:
            problems.append("per-queue counters disagree with the jobs")
        return problems

    def _ready_index_problems(self, pending: set[str]) -> list[str]:
        problems, seen = [], set()
        entries = [entry for queued in self._ready.values() for entry in queued]
        entries += [entry for _, _, _, entry in self._delayed]
        for entry in entries:
            if not self._live(entry):
                continue
            job_id = entry[1].id if entry.__class__ is tuple else entry
            if entry.__class__ is tuple and self._jobs.get(job_id) is not entry[1]:
                problems.append(f"{job_id}: queued for dispatch but not in the table")
            if job_id in seen:
                problems.append(f"{job_id}: queued twice for dispatch")
            seen.add(job_id)
        problems.extend(f"{job_id}: pending but not queued for dispatch"
                        for job_id in sorted(pending - seen))
        return problems

    # -- snapshot form ---------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Everything needed to rebuild the table (what a snapshot stores), in the form that
        loads fastest; the result is a copy as of now (later events do not change it) and
        reading it thaws nothing, so a forked snapshot child shares the parent's pages.

        - ``ready``: per queue, pending jobs in their FIFO order: ``cold`` maps id to spec,
          ``rows`` holds the other pending jobs as ``[position, row]``, their place counted
          over both.
        - ``delayed``: ``[not_before_ms, id, spec]`` or ``[not_before_ms, row]``, due order.
        - ``in_flight``: rows; ``in_flight_epochs``: id to the epoch of its dispatch.
        - ``done``: finished jobs in finish order, id to the offset of its row text in
          ``done_rows`` (bytes, one row and a newline each; a snapshot stores them raw after
          the JSON, so loading copies and decodes none of them), ``done_finished`` their
          finish times, ``done_counts`` their numbers per queue and state and ``dead`` the
          ids of the dead ones.

        Cold jobs are JSON objects because the decoder builds the dict as it parses, hashing
        each id while it is in cache: faster than building it from lists afterwards.
        """
        ready: dict[str, ReadySection] = {}
        for queue, entries in self._ready.items():
            cold: dict[str, str] = {}
            rows: list[list[Any]] = []
            for entry in entries:
                if not self._live(entry):
                    continue
                if entry.__class__ is not tuple and entry in self._cold:
                    cold[entry] = self._cold[entry]
                else:
                    job = entry[1] if entry.__class__ is tuple else self._jobs[entry]
                    rows.append([len(cold) + len(rows), job.to_row()])
            if cold or rows:
                ready[queue] = {"cold": cold, "rows": rows}
        delayed: list[list[Any]] = []
        for not_before_ms, _, _, entry in sorted(self._delayed, key=_due_order):
            if not self._live(entry):
                continue
            spec = self._cold.get(entry) if entry.__class__ is not tuple else None
            if spec is not None:
                delayed.append([not_before_ms, entry, spec])
            else:
                job = entry[1] if entry.__class__ is tuple else self._jobs[entry]
                delayed.append([not_before_ms, job.to_row()])
        done = [(job.finished_ms or 0, job.id, job.queue, job.state, orjson.dumps(job.to_row()))
                for job in self._jobs.values() if job.state in TERMINAL]
        for start in self._cold_done.values():
            text = bytes(self._done_row(start))
            row = orjson.loads(text)
            done.append((row[_FINISHED] or 0, row[0], row[1], row[_STATE], text))
        done.sort(key=_finish_order)
        offsets: dict[str, int] = {}
        texts: list[bytes] = []
        counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TERMINAL, 0))
        offset = 0
        for _, job_id, queue, state, text in done:
            offsets[job_id] = offset
            offset += len(text) + 1
            texts.append(text)
            counts[queue][state] += 1
        return {"version": SCHEMA_VERSION, "last_seq": self.last_seq, "epoch": self.epoch,
                "paused": sorted(self.paused), "totals": dict(self.totals),
                "schedules": dict(self.schedules), "ready": ready, "delayed": delayed,
                "in_flight": [job.to_row() for job in self.in_flight.values()],
                "in_flight_epochs": {job.id: job.epoch for job in self.in_flight.values()},
                "done": offsets, "done_finished": [item[0] for item in done],
                "done_counts": counts, "dead": [item[1] for item in done if item[3] == DEAD],
                "done_rows": b"".join(text + b"\n" for text in texts),
                "waiting": [job.to_row() for job in self._jobs.values() if job.state == WAITING],
                "waiting_cold": self._cold_waiting_by_queue(),
                "graph": self.graph.dump()}

    @classmethod
    def load(cls, data: dict[str, Any]) -> JobTable:
        """Rebuild a table from ``dump()`` output.

        Bulk steps (slices, zip, dict and deque constructors run in C) rather than a Python
        step per job: pending and finished jobs stay cold, so a million of them cost a
        million strings and no JobRecord.
        """
        table = cls()
        table.last_seq = data["last_seq"]
        table.epoch = data["epoch"]
        table.paused = set(data["paused"])
        table.totals.update(data["totals"])
        table.schedules = dict(data.get("schedules", {}))
        for queue, section in data["ready"].items():
            table._load_ready(queue, section["cold"], section["rows"])
        for item in data["delayed"]:
            table._load_delayed(item)
        epochs = data.get("in_flight_epochs", {})  # absent from older snapshots
        for row in data["in_flight"]:
            job = table._load_row(row)
            job.epoch = epochs.get(job.id, 0)
            table.in_flight[job.id] = job
        table._load_done(data)
        for row in data.get("waiting", ()):  # absent from snapshots older than workflows
            table._load_row(row)
        for queue, cold in data.get("waiting_cold", {}).items():  # from schema 4 on
            table._cold_waiting.update(cold)
            table.counts[WAITING] += len(cold)
            table.queue_counts[queue][WAITING] += len(cold)
        table.graph = Graph.load(data.get("graph"))
        return table

    def _cold_waiting_by_queue(self) -> dict[str, dict[str, str]]:
        """Untouched waiting jobs' values (spec text, and a lone parent after a NUL) per queue
        (the queue read off the spec's start, as ``JobRecord.from_spec`` does), so that
        loading counts them without parsing one and keeps them as they are."""
        by_queue: dict[str, dict[str, str]] = defaultdict(dict)
        for job_id, value in self._cold_waiting.items():
            by_queue[value[2:value.index('"', 2)]][job_id] = value
        return dict(by_queue)

    def waiting_job(self, job_id: str) -> JobRecord | None:
        """A waiting job, as a copy that is not kept when it is cold (nothing thaws)."""
        value = self._cold_waiting.get(job_id)
        return (_waiting_record(job_id, _cold_spec(value)) if value is not None
                else self._jobs.get(job_id))

    def _load_row(self, row: list[Any]) -> JobRecord:
        job = JobRecord(*row)
        self._jobs[job.id] = job
        self._count(job, job.state, 1)
        return job

    def _load_ready(self, queue: str, cold: dict[str, str], rows: list[list[Any]]) -> None:
        if self._cold:
            self._cold.update(cold)
        else:
            self._cold = cold  # the decoder's dict, kept as it is
        self.counts[PENDING] += len(cold)
        self.queue_counts[queue][PENDING] += len(cold)
        entries = self._ready[queue]
        if not rows:
            entries.extend(cold)
            return
        ids, used = list(cold), 0
        for position, row in rows:
            cold_before = position - len(entries)
            entries.extend(ids[used:used + cold_before])
            used += cold_before
            job = self._load_row(row)
            job.ticket = self._ticket = self._ticket + 1
            entries.append((job.ticket, job))
        entries.extend(ids[used:])

    def _load_delayed(self, item: list[Any]) -> None:
        self._ticket += 1
        if len(item) == 3:
            not_before_ms, job_id, spec = item
            queue = orjson.loads(spec)[0]
            self._cold[job_id] = spec
            self.counts[PENDING] += 1
            self.queue_counts[queue][PENDING] += 1
            self._delayed.append((not_before_ms, self._ticket, queue, job_id))
        else:
            not_before_ms, row = item
            job = self._load_row(row)
            job.ticket = self._ticket
            self._delayed.append((not_before_ms, job.ticket, job.queue, (job.ticket, job)))

    def _load_done(self, data: dict[str, Any]) -> None:
        self._cold_done = data["done"]
        self._done_rows, self._done_base = data["done_rows"], data.get("done_base", 0)
        for queue, by_state in data["done_counts"].items():
            for state, count in by_state.items():
                self.counts[state] += count
                self.queue_counts[queue][state] += count
        self._finished.extend(zip(data["done_finished"], self._cold_done, strict=True))
        self._cold_dead = data["dead"]

    def canonical(self) -> dict[str, Any]:
        """A form for comparing two tables: every job's row sorted by id, indexes left out."""
        rows = sorted((job.to_row() for job in self.all_jobs()), key=_job_id_of)
        return {"last_seq": self.last_seq, "epoch": self.epoch, "paused": sorted(self.paused),
                "totals": dict(self.totals), "schedules": dict(self.schedules), "jobs": rows,
                "graph": {**self.graph.canonical(),
                          "parents": {**self.graph.parents, **self.cold_parents()}}}


_STATE = ROW_FIELDS.index("state")
_FINISHED = ROW_FIELDS.index("finished_ms")


def _job_id_of(row: list[Any]) -> str:
    job_id: str = row[0]
    return job_id


def _due_order(item: tuple[int, int, str, Entry]) -> tuple[int, int]:
    return item[0], item[1]


def _finish_order(item: tuple[Any, ...]) -> tuple[int, str]:  # finish time, then id
    return item[0], item[1]


class _JobsView(Mapping[str, JobRecord]):
    """``table.jobs``: every job by id; reading a cold one thaws it."""

    def __init__(self, table: JobTable) -> None:
        self._table = table

    def __getitem__(self, job_id: str) -> JobRecord:
        job = self._table.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._table

    def __iter__(self) -> Iterator[str]:
        table = self._table
        return iter([*table._jobs, *table._cold, *table._cold_done, *table._cold_waiting])

    def __len__(self) -> int:
        return len(self._table)


def _cold_spec(value: str) -> str:
    """The spec text of an untouched waiting job's entry (its lone parent cut off)."""
    return value.partition(LONE)[0]


def _waiting_record(job_id: str, spec: str) -> JobRecord:
    """A waiting job from its spec text: never queued, so no id entry of it lingers."""
    job = JobRecord.from_spec(job_id, spec)
    job.state = WAITING
    job.lingers = False
    return job


def _job_problems(job: JobRecord, in_flight: dict[str, JobRecord]) -> list[str]:
    problems = []
    job_id = job.id
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
