"""The job table: a pure state machine. Events in, state out; no disk, sockets or clock.

Events are the positional records of ``events``; ``apply`` runs the handler of a record's
type (transitions.py has the state diagram). A record numbered at or below ``last_seq`` was
applied before and is skipped, which is what makes replaying a record twice, or a snapshot
plus an overlapping log, give the same table.

``JobTable`` is built from parts, one concept each, that share its fields (fields.py):

    transitions.py    what each record does, and the moves they share
    ready.py          the ready lines, the delayed heap and the finish-order line
    cold.py           jobs kept as text until something needs their record (recovery is
                      memory: a million pending jobs are a million strings)
    lanes.py          the lines of jobs with a priority or a key
    expiry.py         unstarted jobs by when they expire
    graph.py          dependencies: waiting children, and what a parent's end does
    invariants.py     what must hold of a table (``validate``)
    snapshot_form.py  the form a snapshot stores (``dump`` / ``load``)
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterator, Mapping
from typing import Any

from . import events as ev
from . import snapshot_form
from .cold import ColdStore
from .expiry import Expiry
from .fields import Entry
from .graph import Dependencies, Graph
from .invariants import table_problems
from .lanes import Lanes
from .ready import ReadyIndex
from .record import DEAD, STATES, JobRecord
from .snapshot_form import SCHEMA_VERSION
from .transitions import Transitions

__all__ = ["JobTable", "SCHEMA_VERSION"]


class JobTable(Transitions, ReadyIndex, ColdStore, Dependencies, Expiry):
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
        # The latest controller time a record carried that dates a lease or a due time (a
        # dispatch, failure, expiry, boot or due record): where a restarted controller's run
        # clock starts at the earliest (fleet/clock.py).
        self.clock_ms = 0
        self.schedules: dict[str, int] = {}
        self.paused: set[str] = set()
        self.counts: dict[str, int] = dict.fromkeys(STATES, 0)
        self.queue_counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATES, 0))
        self.totals: dict[str, int] = dict.fromkeys(
            ("enqueued", "dispatched", "completed", "failed", "expired", "released", "dead",
             "retried", "cancelled", "compacted", "expired_unstarted"), 0)
        self._ready: dict[str, deque[Entry]] = defaultdict(deque)
        self._lanes: dict[str, Lanes] = {}  # jobs with a priority or a key (lanes.py)
        self._expiring: list[tuple[int, str]] = []  # (expires_at_ms, id) heap (expiry.py)
        self.limits: dict[str, dict[str, Any]] = {}  # per queue, as recorded (fleet/flow.py)
        self.key_flight: dict[str, dict[str, int]] = {}  # per queue and key: jobs in flight
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
            ev.ENQUEUED_AFTER: self._on_enqueued_after, ev.LIMITS: self._on_limits,
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

    # -- reading the whole table -------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts per state, per queue and state, and running totals."""
        queues = {q: dict(c) for q, c in self.queue_counts.items() if any(c.values())}
        return {"states": dict(self.counts), "queues": queues, "totals": dict(self.totals),
                "paused": sorted(self.paused), "last_seq": self.last_seq, "epoch": self.epoch,
                "limits": {q: dict(lim) for q, lim in self.limits.items()}}

    def dead_jobs(self) -> list[JobRecord]:
        """Jobs in the dead-letter set, oldest failure first."""
        for job_id in self._cold_dead:
            self.get(job_id)
        self._cold_dead = []
        dead = [job for job in self._jobs.values() if job.state == DEAD]
        return sorted(dead, key=lambda job: job.finished_ms or 0)

    # -- checks and the snapshot form ------------------------------------------------------

    def validate(self) -> list[str]:
        """Every invariant violation found; an empty list means the table is sound."""
        return table_problems(self)

    def dump(self) -> dict[str, Any]:
        """Everything needed to rebuild the table: what a snapshot stores
        (``snapshot_form.dump``)."""
        return snapshot_form.dump(self)

    @classmethod
    def load(cls, data: dict[str, Any]) -> JobTable:
        """Rebuild a table from ``dump()`` output."""
        return snapshot_form.load(cls(), data)

    def canonical(self) -> dict[str, Any]:
        """A form for comparing two tables: every job's row sorted by id, indexes left out."""
        rows = sorted((job.to_row() for job in self.all_jobs()), key=_job_id_of)
        return {"last_seq": self.last_seq, "epoch": self.epoch, "clock_ms": self.clock_ms,
                "paused": sorted(self.paused),
                "limits": self.limits,
                "totals": dict(self.totals), "schedules": dict(self.schedules), "jobs": rows,
                "graph": {**self.graph.canonical(),
                          "parents": {**self.graph.parents, **self.cold_parents()}}}


def _job_id_of(row: list[Any]) -> str:
    job_id: str = row[0]
    return job_id


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
