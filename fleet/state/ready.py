"""The table's lines: each queue's ready line, the delayed heap, the finish-order line.

FIFO within a queue: each queue keeps a deque of entries in the order jobs became ready, and
delayed jobs wait in a heap of ``(not_before_ms, order, queue, entry)`` until a ``due`` record
moves them into line; that record is logged, so replay rebuilds the same order. A cold
job's entry is its id; a JobRecord put back in line gets a ``(ticket, job)`` entry. Entries go
stale instead of being removed, so taking work is O(1) per job: an id entry is live while its
job is cold, or thawed (``lingers``) and still pending with ticket 0; a ``(ticket, job)``
entry while the job is pending with that ticket. An id compacted while its stale entry may
still be queued goes into ``_lingering``, and a new job under that id is queued by ticket, so
the old entry can never stand for it.

Finished jobs join the finish-order line ``(finished_ms, id)``, which retention reads from
the front (``finished_before``); an entry goes stale when its job is retried or compacted.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ConfigError
from ..flow import check_limits
from .events import spec_flow
from .fields import Entry, TableFields
from .lanes import MAX_EXPIRED_PER_TAKE, Lanes
from .record import IN_FLIGHT, PENDING, TERMINAL, JobRecord


def checked_limits(queue: Any, limits: Any) -> dict[str, Any]:
    """A queue's limits from a log record or a snapshot, checked as the controller checks
    them before recording (fleet/flow.py ``check_limits``).

    Raises:
        ValueError: they do not check (a damaged or hand-made log or snapshot).
    """
    try:
        return check_limits(queue, limits, recorded=True)
    except ConfigError as exc:
        raise ValueError(f"limits: {exc}") from None


LANE_HEADS_READ = 64  # lanes' lines whose head the status's oldest-pending age reads


class ReadyIndex(TableFields):
    """Which pending jobs are next, per queue; when delayed ones come due; what finished when
    (``JobTable`` inherits it)."""

    if TYPE_CHECKING:  # defined by the cold storage (cold.py)
        def _thaw(self, job_id: str) -> JobRecord | None: ...

    def _make_ready(self, job: JobRecord) -> None:
        ticket = self._ticket = self._ticket + 1
        job.ticket = ticket
        if job.not_before_ms:
            heapq.heappush(self._delayed, (job.not_before_ms, ticket, job.queue, (ticket, job)))
        else:
            self._enline(job.queue, job.flow, (ticket, job))

    def _enline(self, queue: str, flow: list[Any] | None, entry: Entry) -> None:
        """Put ``entry`` at the back of its line: the queue's plain line, or the lane of its
        priority and key (lanes.py)."""
        if flow is None or (not flow[0] and flow[2] is None):
            self._ready[queue].append(entry)
        else:
            self._lane(queue).append(flow[0], flow[2], entry)

    def _lane(self, queue: str) -> Lanes:
        lanes = self._lanes.get(queue)
        if lanes is None:
            lanes = self._lanes[queue] = Lanes(self._ready[queue])
        return lanes

    def _on_paused(self, record: list[Any]) -> bool:
        self.paused.add(record[1])
        return True

    def _on_resumed(self, record: list[Any]) -> bool:
        self.paused.discard(record[1])
        return True

    def _on_limits(self, record: list[Any]) -> bool:
        _, queue, limits = record
        limits = checked_limits(queue, limits)  # a take must not fail on a bad record
        if limits:
            self.limits[queue] = limits
        else:
            self.limits.pop(queue, None)
        lanes = self._lanes.get(queue)
        if lanes is not None:
            lanes.unpark_all()  # the take re-parks a key still at the new limit
        return True

    def _key_landed(self, queue: str, key: str) -> None:
        """A job of ``key`` left flight: its slot is free, and the key may take turns."""
        flight = self.key_flight.get(queue)
        if flight is not None and key in flight:
            flight[key] -= 1
            if not flight[key]:
                del flight[key]
        lanes = self._lanes.get(queue)
        if lanes is not None:
            lanes.unpark(key)

    def _entry_flow(self, entry: Entry) -> list[Any] | None:
        if isinstance(entry, tuple):
            return entry[1].flow
        spec = self._cold.get(entry)
        if spec is not None:
            return spec_flow(spec)
        job = self._jobs.get(entry)
        return job.flow if job is not None else None

    def _live(self, entry: Entry) -> bool:
        """Whether a ready or delayed entry still stands for a pending job (nothing thaws)."""
        if isinstance(entry, tuple):
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
        if isinstance(entry, tuple):
            queued: JobRecord = entry[1]
            return queued
        # Live, so the id is thawed or cold: one of the two finds it. (Not a cast: a call
        # per job taken.)
        job: JobRecord = self._jobs.get(entry) or self._thaw(entry)  # type: ignore[assignment]
        job.lingers = False
        return job

    def take_ready(self, queue: str, limit: int) -> list[JobRecord]:
        """``take`` without expiry: the jobs only."""
        return self.take(queue, limit)[0]

    def take(self, queue: str, limit: int, now_ms: int | None = None
             ) -> tuple[list[JobRecord], list[JobRecord]]:
        """Up to ``limit`` pending jobs of ``queue``, within its limits: highest priority
        first, keys in turn (lanes.py), then oldest first; and the jobs met on the way whose
        expiry passed by ``now_ms`` (None: none expire).

        The caller must dispatch every job returned and cancel every expired one: they leave
        the ready index. Delayed jobs join a line only through a logged ``due`` record
        (``has_due``).
        """
        if queue in self.paused or limit <= 0:
            return [], []
        limits = self.limits.get(queue)
        if limits is not None and "concurrency" in limits:
            limit = min(limit, limits["concurrency"] - self.queue_counts[queue][IN_FLIGHT])
            if limit <= 0:
                return [], []
        lanes = self._lanes.get(queue)
        if lanes is not None:
            expired: list[JobRecord] = []
            per_key = limits.get("per_key", 0) if limits is not None else 0
            jobs, popped = lanes.take(self._take, limit, per_key,
                                      self.key_flight.get(queue, {}), now_ms, expired)
            self.ready_popped[queue] += popped
            return jobs, expired
        ready = self._ready.get(queue)
        if not ready:
            return [], []
        taken: list[JobRecord] = []
        expired = []
        before = len(ready)
        while ready and len(taken) < limit and len(expired) < MAX_EXPIRED_PER_TAKE:
            job = self._take(ready.popleft())
            if job is None:
                continue
            flow = job.flow  # a plain line's job may still have an expiry
            if flow is not None and now_ms is not None and 0 < flow[1] < now_ms \
                    and not job.attempt:
                expired.append(job)
            else:
                taken.append(job)
        self.ready_popped[queue] += before - len(ready)
        return taken, expired

    def ready_queues(self) -> list[str]:
        """Queues with jobs in line that are not paused."""
        queues = [q for q, entries in self._ready.items() if entries and q not in self.paused]
        queues += [q for q, lanes in self._lanes.items()
                   if q not in self.paused and q not in queues
                   and any(line for _, _, line in lanes.entries())]
        return queues

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
        """Enqueue time of the oldest job at the head of any ready queue (for status): of
        each plain line, and of the first ``LANE_HEADS_READ`` lines of each queue's lanes
        (a figure, not a census, with thousands of keys)."""
        lines: list[Iterable[Entry]] = list(self._ready.values())
        for lanes in self._lanes.values():
            lines += [line for _, _, line in islice(lanes.entries(), LANE_HEADS_READ)]
        heads = []
        for entries in lines:
            for entry in entries:
                if self._live(entry):
                    heads.append(self._enqueued_ms(entry))
                    break
        return min(heads, default=None)

    def _enqueued_ms(self, entry: Entry) -> int:
        if isinstance(entry, tuple):
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
        if not isinstance(entry, tuple):
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
