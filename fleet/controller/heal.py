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
from typing import Any, cast

from ..keys import Keys
from ..protocol.dispatch import id_and_attempt
from ..state import JobRecord, JobTable
from ..transport import ControllerWire
from .dispatch import Dispatcher
from .journal import Journal
from .sightings import Sightings

log = logging.getLogger("fleet.controller")

# The executors of a stopped worker whose taken lists are searched (its heartbeat says how
# many it ran; a larger count is not believed, so that one beat cannot cost a lapse more).
MAX_TAKEN_SLOTS = 256


class Witness:
    """What the heartbeats say about who may hold a job whose message is gone from Redis.

    A job is in a worker's hands only if a heartbeat named it (``jobs``), or if a worker
    popped it and died before its next heartbeat could. A worker that is still beating and
    does not name a job does not hold it: the job's message, or its ack, was lost in Redis.
    So a job may be held (and its lapse be a failed attempt) only when the worker that named
    it has stopped beating, or, if none named it, when some worker serving its queue stopped
    beating after the job was dispatched and after its message was last seen waiting in its
    ready list (``Sightings``; until its next heartbeat was due, it may have popped it).
    Workers that stopped are remembered for a few leases, long enough for every job they
    could have taken to lapse. What such a worker's executors prefetched and never started
    is in their taken lists (``unstarted_keys``; executor.py): a job found there did not run.
    """

    def __init__(self, lease_ms: int, heartbeat_ms: int) -> None:
        self.horizon_ms = 2 * (lease_ms + 5 * heartbeat_ms)
        self.heartbeat_ms = heartbeat_ms
        self.sightings = Sightings()
        self.live: set[str] = set()
        self.holders: dict[str, tuple[int, str]] = {}  # job id -> (attempt, worker id)
        # worker id -> (when seen, queues, executors)
        self.workers: dict[str, tuple[int, frozenset[str] | None, int]] = {}

    def observe(self, live_beats: Iterable[dict[str, Any]], now_ms: int,
                in_flight: Mapping[str, JobRecord]) -> None:
        """Take in one read of the beating workers' heartbeats."""
        live: set[str] = set()
        for beat in live_beats:
            worker_id, queues = beat.get("id"), beat.get("queues")
            if not isinstance(worker_id, str):
                continue
            live.add(worker_id)
            # The most executors it ever reported: its lists are by slot, and a slot waiting
            # to respawn (or drained) is left out of the count while its list may hold work.
            known = self.workers.get(worker_id)
            self.workers[worker_id] = (now_ms, None if queues is None else frozenset(queues),
                                       max(beat.get("executors") or 0, known[2] if known else 0))
            for entry in beat.get("jobs") or ():
                self.holders[entry[0]] = (entry[1], worker_id)
        self.live = live
        oldest_ms = now_ms - self.horizon_ms
        self.workers = {w: seen for w, seen in self.workers.items()
                        if w in live or seen[0] >= oldest_ms}
        self.holders = {job_id: held for job_id, held in self.holders.items()
                        if job_id in in_flight and in_flight[job_id].attempt == held[0]}
        self.sightings.forget(in_flight)

    def may_hold(self, job: JobRecord) -> bool:
        """Whether a worker that stopped beating may have taken ``job``'s current attempt."""
        held = self.holders.get(job.id)
        if held is not None and held[0] == job.attempt:
            return held[1] not in self.live
        return bool(self._takers(job))

    def unstarted_keys(self, job: JobRecord, keys: Keys) -> list[str]:
        """The taken lists where ``job``'s message is if a worker that stopped beating took
        it and never started it; none when a heartbeat named it running (it started)."""
        held = self.holders.get(job.id)
        if held is not None and held[0] == job.attempt:
            return []
        return [keys.taken(worker_id, slot) for worker_id, executors in self._takers(job)
                for slot in range(min(executors, MAX_TAKEN_SLOTS))]

    def _takers(self, job: JobRecord) -> list[tuple[str, int]]:
        """``(worker id, executors)`` of the stopped workers that may have popped ``job``."""
        dispatched_ms = job.dispatched_ms or 0
        # A worker last heard at ``seen_ms`` may live until its next heartbeat is due (and
        # one more, for a late beat): a message seen waiting after that was not its to pop.
        waiting_ms = self.sightings.seen_waiting_ms(job.queue, job.id, job.attempt)
        popped_after_ms = (waiting_ms or 0) - 2 * self.heartbeat_ms
        return [(worker_id, executors)
                for worker_id, (seen_ms, queues, executors) in self.workers.items()
                if worker_id not in self.live and seen_ms >= dispatched_ms
                and seen_ms >= popped_after_ms and (queues is None or job.queue in queues)]


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
        self.purge_due = False
        self.due_ms = 0
        self.reported: set[str] = set()
        self.missing: dict[str, int] = {}
        self.redispatched = 0

    def start(self, now_ms: int) -> None:
        """Begin (or restart) a heal: after a recovery or a detected Redis data loss."""
        self.phase = Phase.WAIT_REPORTS
        self.purge_due = True
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
        self.purge_due = True  # again: a stale copy of a job popped just before is named now
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


class Timeline:
    """Notices a Redis that went back in time, not only one that came back empty.

    A rollback (restarted from an older RDB, ``DEBUG RELOAD``, a failover that dropped the
    last writes) restores the controller key with this controller's own token, so the fence
    sees nothing. So every ``CHECK_EVERY_MS`` the controller sets ``{ns}:generation`` to the
    next number and reads back what it held (``SET … GET``): anything but the number last
    written means Redis lost writes. A changed server run id means it restarted.
    """

    CHECK_EVERY_MS = 100

    def __init__(self) -> None:
        self.written: int | None = None
        self.run_id: str | None = None

    def next_value(self) -> int:
        return (self.written or 0) + 1

    def tick(self, wire: Any) -> str | None:
        """Advance the marker in Redis (a ControllerWire); returns what went wrong, or None."""
        value = self.next_value()
        previous, run_id = wire.advance_generation(value)
        return self.check(value, previous, run_id)

    def check(self, value: int, previous: bytes | None, run_id: str | None) -> str | None:
        """Record that ``value`` replaced ``previous``; returns what went wrong, or None."""
        last, self.written = self.written, value
        old_run_id, self.run_id = self.run_id, run_id or self.run_id
        if last is None:
            return None
        if run_id is not None and old_run_id is not None and run_id != old_run_id:
            return f"Redis restarted (run id {old_run_id[:8]} -> {run_id[:8]})"
        if previous is None:
            return "the generation marker vanished from Redis"
        if previous != str(last).encode():
            return (f"Redis went back in time (generation marker held {previous[:20]!r}, "
                    f"{last} was written last)")
        return None


def heal(healer: Healer, wire: ControllerWire, keys: Keys, table: JobTable,
         holders: Mapping[str, tuple[int, str]], dispatcher: Dispatcher, now_ms: int
         ) -> dict[str, list[bytes]]:
    """Drive the ``healer`` one step: purge stale messages when due (``holders``: the jobs a
    worker reported), look for the candidates' messages in Redis at step 2, and at step 4
    lease the jobs to dispatch again. Returns their messages, by queue, to push after the
    commit."""
    if healer.purge_due:
        healer.purge_due = False
        purge_stale(wire, keys, table, holders)
    candidates = healer.candidates(now_ms)
    if candidates is not None:
        in_flight = table.in_flight
        probes = [(keys.ready(in_flight[i].queue),
                   dispatcher.message(in_flight[i], n, cast(int, in_flight[i].dispatched_ms)))
                  for i, n in candidates]
        present = wire.present(probes)
        healer.found([c for c, p in zip(candidates, present, strict=True) if not p], now_ms)
    messages: dict[str, list[bytes]] = {}
    for job_id in healer.to_redispatch(now_ms):
        job = table.in_flight[job_id]
        messages.setdefault(job.queue, []).append(dispatcher.lease(job, now_ms))
    return messages


def purge_stale(wire: ControllerWire, keys: Keys, table: JobTable,
                running: Mapping[str, tuple[int, str]]) -> int:
    """Take out of the ready lists what must not run (``stale_messages``); returns how many."""
    lists = wire.read_ready(table.queue_counts)
    stale = stale_messages(lists, table.in_flight, running)
    if not stale:
        return 0
    removed = sum(wire.remove([(keys.ready(queue), raw) for queue, raw in stale]))
    if removed:
        log.warning("purged %d stale messages from the ready lists", removed)
    return removed


def stale_messages(lists: Mapping[str, list[bytes]], in_flight: Mapping[str, JobRecord],
                   running: Mapping[str, tuple[int, str]]) -> list[tuple[str, bytes]]:
    """``(queue, message)`` of every ready message that must not run: its job is not in flight
    at that attempt (completed, dead, cancelled, forgotten, or leased again since), a worker
    already runs that attempt, or it is a second copy. Such messages come back with a Redis
    rollback; run, they would run a completed job again. Messages fleet cannot read are left
    to the workers, which refuse them."""
    stale, seen = [], set()
    for queue, messages in lists.items():
        for raw in messages:
            job_id, attempt = id_and_attempt(raw)
            if job_id is None:
                continue
            job = in_flight.get(job_id)
            if (job is None or job.attempt != attempt or (job_id, attempt) in seen
                    or running.get(job_id, (None,))[0] == attempt):
                stale.append((queue, raw))
            seen.add((job_id, attempt))
    return stale

