"""Healing: find in-flight jobs whose message is gone, and dispatch them again.

After a controller restart (it may have died between committing a DISPATCH and pushing the
message) and after Redis lost its data, some in-flight jobs are neither running nor waiting in
a ready list. Waiting for their leases would stall them for ``lease_s``; instead:

1. wait one heartbeat period so that running workers report their jobs;
2. for every in-flight job nobody reported, look for its message in its ready list (LPOS);
3. wait one more heartbeat period: a job popped before step 2 is reported by now if it runs;
4. re-dispatch (new attempt, not a failure) every job from step 2 that is still in flight,
   was not found and still was not reported, unless a worker may have taken it and died
   (``Witness``): such a job waits for its lease and is charged then.

A heal starts after a recovery, when the controller key vanished, after a Redis error, and
when Redis went back in time (``Timeline``). A lease that lapses with the message gone is
judged by the same ``Witness`` (reconcile.py): a lost message is never a failed attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from ..journal import Journal
from ..state import JobRecord

log = logging.getLogger("fleet.controller")


class Witness:
    """What the heartbeats say about who may hold a job whose message is gone from Redis.

    A job is in a worker's hands only if a heartbeat named it (``jobs``), or if a worker
    popped it and died before its next heartbeat could. A worker that is still beating and
    does not name a job does not hold it: the job's message, or its ack, was lost in Redis.
    So a job may be held (and its lapse be a failed attempt) only when the worker that named
    it has stopped beating, or, if none named it, when some worker serving its queue stopped
    beating after the job was dispatched (it may have popped it). Workers that stopped are
    remembered for a few leases, long enough for every job they could have taken to lapse.
    """

    def __init__(self, lease_ms: int, heartbeat_ms: int) -> None:
        self.horizon_ms = 2 * (lease_ms + 5 * heartbeat_ms)
        self.live: set[str] = set()
        self.holders: dict[str, tuple[int, str]] = {}  # job id -> (attempt, worker id)
        self.workers: dict[str, tuple[int, frozenset[str] | None]] = {}  # -> (seen, queues)

    def observe(self, live_beats: Iterable[dict[str, Any]], now_ms: int,
                in_flight: Mapping[str, JobRecord]) -> None:
        """Take in one read of the beating workers' heartbeats."""
        live: set[str] = set()
        for beat in live_beats:
            worker_id, queues = beat.get("id"), beat.get("queues")
            if not isinstance(worker_id, str):
                continue
            live.add(worker_id)
            self.workers[worker_id] = (now_ms, None if queues is None else frozenset(queues))
            for entry in beat.get("jobs") or ():
                self.holders[entry[0]] = (entry[1], worker_id)
        self.live = live
        oldest_ms = now_ms - self.horizon_ms
        self.workers = {w: seen for w, seen in self.workers.items()
                        if w in live or seen[0] >= oldest_ms}
        self.holders = {job_id: held for job_id, held in self.holders.items()
                        if job_id in in_flight and in_flight[job_id].attempt == held[0]}

    def may_hold(self, job: JobRecord) -> bool:
        """Whether a worker that stopped beating may have taken ``job``'s current attempt."""
        held = self.holders.get(job.id)
        if held is not None and held[0] == job.attempt:
            return held[1] not in self.live
        dispatched_ms = job.dispatched_ms or 0
        return any(worker_id not in self.live and seen_ms >= dispatched_ms
                   and (queues is None or job.queue in queues)
                   for worker_id, (seen_ms, queues) in self.workers.items())


class Phase(Enum):
    IDLE = 0
    WAIT_REPORTS = 1
    WAIT_CONFIRM = 2


class Healer:
    """A small state machine driven by the controller loop."""

    def __init__(self, journal: Journal, heartbeat_ms: int,
                 witness: Witness | None = None) -> None:
        self.journal = journal
        self.witness = witness
        self.heartbeat_ms = heartbeat_ms
        self.phase = Phase.IDLE
        self.due_ms = 0
        self.reported: set[str] = set()
        self.missing: dict[str, int] = {}
        self.redispatched = 0

    def start(self, now_ms: int) -> None:
        """Begin (or restart) a heal: after a recovery or a detected Redis data loss."""
        self.phase = Phase.WAIT_REPORTS
        self.due_ms = now_ms + self.heartbeat_ms * 2
        self.reported = set()
        self.missing = {}

    def on_reported(self, job_ids: set[str]) -> None:
        if self.phase is not Phase.IDLE:
            self.reported |= job_ids

    def candidates(self, now_ms: int) -> list[tuple[str, int]] | None:
        """At step 2: ``(job id, attempt)`` to look for in Redis; None when not due."""
        if self.phase is not Phase.WAIT_REPORTS or now_ms < self.due_ms:
            return None
        return [(job.id, job.attempt) for job in self.journal.table.in_flight.values()
                if job.id not in self.reported]

    def found(self, missing: list[tuple[str, int]], now_ms: int) -> None:
        """Step 2's answer: the candidates whose message is not in Redis."""
        self.missing = dict(missing)
        self.reported = set()
        self.phase = Phase.WAIT_CONFIRM
        self.due_ms = now_ms + self.heartbeat_ms * 2

    def to_redispatch(self, now_ms: int) -> list[str]:
        """At step 4: ids to dispatch again (empty when not due)."""
        if self.phase is not Phase.WAIT_CONFIRM or now_ms < self.due_ms:
            return []
        in_flight = self.journal.table.in_flight
        ids = [job_id for job_id, attempt in self.missing.items()
               if job_id in in_flight and in_flight[job_id].attempt == attempt
               and job_id not in self.reported
               and not (self.witness and self.witness.may_hold(in_flight[job_id]))]
        self.phase = Phase.IDLE
        self.missing = {}
        if ids:
            log.warning("re-dispatching %d in-flight jobs whose messages were lost", len(ids))
        self.redispatched += len(ids)
        return ids
