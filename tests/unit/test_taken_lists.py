"""A lapse the controller would charge to a worker that stopped beating: first it looks for the
job's message in that worker's taken lists, where its executors keep what they prefetched and
have not started (docs/protocol.md §3, §5 step 5)."""

from __future__ import annotations

import random

import fakeredis
import pytest

from fleet.config import Settings
from fleet.controller.dispatch import Dispatcher
from fleet.controller.heal import MAX_TAKEN_SLOTS
from fleet.controller.journal import Journal
from fleet.controller.liveness import Liveness
from fleet.controller.options import DispatchOptions, ReconcileOptions
from fleet.controller.reconcile import (
    MAX_UNSTARTED_IN_A_ROW,
    UNSTARTED_REASON,
    Reconciler,
    expire_lapsed,
)
from fleet.state import PENDING
from fleet.transport import ControllerWire

from . import test_heal
from .test_heal import HEARTBEAT_MS, KEYS, LEASE_MS, _message

journal = test_heal.journal  # the fixture: jobs a, b and c, dispatched at 10 ms


def _parts(journal: Journal) -> tuple[Reconciler, Dispatcher]:
    settings = Settings(lease_s=LEASE_MS / 1000, heartbeat_s=HEARTBEAT_MS / 1000)
    reconciler = Reconciler(journal, ReconcileOptions.of(settings), random.Random(1),
                            Liveness(HEARTBEAT_MS))
    return reconciler, Dispatcher(journal, DispatchOptions.of(settings))


def test_a_dead_workers_unstarted_prefetch_is_released_and_the_rest_charged(journal):
    """w ran c (its beat named it) and had a in executor 1's taken list when it died; b it
    may have popped and lost with itself. a goes back uncharged; b and c are failed
    attempts (c is not even looked for: a beat named it running, so it started)."""
    redis = fakeredis.FakeRedis()
    wire = ControllerWire(redis, KEYS)
    reconciler, dispatcher = _parts(journal)
    # A copy left behind for an attempt a beat named running (a dropped LREM): it started.
    redis.rpush(KEYS.taken("w", 0), _message(dispatcher, journal, "c"))
    redis.rpush(KEYS.taken("w", 1), _message(dispatcher, journal, "a"))
    reconciler.on_heartbeats([{"id": "w", "ts": 1, "queues": ["default"], "executors": 2,
                               "jobs": [["c", 1, 20]]}], 100)
    reconciler.on_heartbeats([], 300)  # its heartbeat key is gone: the worker died
    # c's lease, extended by the beat that named it, ends at 100 + LEASE_MS.
    expire_lapsed(reconciler, wire, KEYS, dispatcher, LEASE_MS + 200)  # the grace
    expire_lapsed(reconciler, wire, KEYS, dispatcher, LEASE_MS + 200 + 2 * HEARTBEAT_MS + 1)
    jobs = journal.table.jobs
    assert [jobs[job_id].state for job_id in "abc"] == [PENDING] * 3
    assert [jobs[job_id].failures for job_id in "abc"] == [0, 1, 1]
    assert jobs["a"].history[-1]["o"] == "released"
    assert jobs["a"].history[-1]["e"] == UNSTARTED_REASON
    # The lists are only read: a copy of an attempt that ended matches nothing again.
    assert redis.llen(KEYS.taken("w", 1)) == 1 and redis.llen(KEYS.taken("w", 0)) == 1


@pytest.mark.parametrize(("before", "charged"), [
    (MAX_UNSTARTED_IN_A_ROW - 1, False), (MAX_UNSTARTED_IN_A_ROW, True)])
def test_a_job_found_unstarted_too_many_times_in_a_row_is_charged(journal, before, charged):
    """A job whose last attempts all went back uncharged from a dead worker's taken list (the
    LREM sent before each start may never have reached Redis) is charged once that has
    happened MAX_UNSTARTED_IN_A_ROW times in a row: a poison job cannot loop for free."""
    redis = fakeredis.FakeRedis()
    wire = ControllerWire(redis, KEYS)
    reconciler, dispatcher = _parts(journal)
    released = {"o": "released", "e": UNSTARTED_REASON, "ft": 1}
    journal.table.jobs["a"].history.extend(
        [{"o": "released", "e": "message gone from Redis", "ft": 1}] + [released] * before)
    redis.rpush(KEYS.taken("w", 0), _message(dispatcher, journal, "a"))
    reconciler.on_heartbeats([{"id": "w", "ts": 1, "queues": ["default"], "executors": 1,
                               "jobs": []}], 100)
    reconciler.on_heartbeats([], 300)
    expire_lapsed(reconciler, wire, KEYS, dispatcher, LEASE_MS + 200)
    expire_lapsed(reconciler, wire, KEYS, dispatcher, LEASE_MS + 200 + 2 * HEARTBEAT_MS + 1)
    job = journal.table.jobs["a"]
    assert job.state == PENDING
    assert job.failures == (1 if charged else 0)
    assert job.history[-1]["o"] == ("expired" if charged else "released")


def test_a_live_workers_lists_are_never_searched(journal):
    """A worker still beating that does not name a job does not hold it: the lapse is a lost
    message, released without touching the worker's lists."""
    redis = fakeredis.FakeRedis()
    wire = ControllerWire(redis, KEYS)
    reconciler, dispatcher = _parts(journal)
    redis.rpush(KEYS.taken("w", 0), _message(dispatcher, journal, "a"))
    beat = {"id": "w", "ts": 1, "queues": ["default"], "executors": 1, "jobs": []}
    reconciler.on_heartbeats([beat], 100)
    expire_lapsed(reconciler, wire, KEYS, dispatcher, LEASE_MS + 20)
    reconciler.on_heartbeats([dict(beat, ts=2)], LEASE_MS + 100)
    expire_lapsed(reconciler, wire, KEYS, dispatcher, LEASE_MS + 20 + 2 * HEARTBEAT_MS + 1)
    assert journal.table.jobs["a"].failures == 0
    assert redis.llen(KEYS.taken("w", 0)) == 1


def test_a_beat_claiming_huge_executor_counts_costs_a_lapse_a_bounded_search(journal):
    """The executors a heartbeat claims (up to the protocol's 10,000) decide how many lists
    are searched, but never more than MAX_TAKEN_SLOTS; a count of the wrong type, none."""
    reconciler, _ = _parts(journal)
    witness = reconciler.witness
    in_flight = journal.table.in_flight
    witness.observe([{"id": "big", "queues": ["default"], "executors": 10_000},
                     {"id": "odd", "queues": ["default"], "executors": None}], 100, in_flight)
    witness.observe([], 300, in_flight)
    keys = witness.unstarted_keys(in_flight["a"], KEYS)
    assert len(keys) == MAX_TAKEN_SLOTS
    assert keys[0] == KEYS.taken("big", 0)


def test_a_slot_left_out_of_the_last_beat_is_still_searched(journal):
    """A worker reports the executors it runs now; one waiting to respawn drops out of the
    count while its list may hold work, so the most it ever reported counts."""
    reconciler, _ = _parts(journal)
    witness, in_flight = reconciler.witness, journal.table.in_flight
    witness.observe([{"id": "w", "queues": ["default"], "executors": 4}], 100, in_flight)
    witness.observe([{"id": "w", "queues": ["default"], "executors": 3}], 200, in_flight)
    witness.observe([], 300, in_flight)
    assert witness.unstarted_keys(in_flight["a"], KEYS)[-1] == KEYS.taken("w", 3)


def test_the_search_makes_a_bounded_number_of_lookups(journal, monkeypatch):
    """However many stopped workers may hold a job, one step's lapses make at most
    MAX_TAKEN_LOOKUPS lookups, and read no list's contents."""
    from fleet.controller import reconcile
    redis = fakeredis.FakeRedis()
    wire = ControllerWire(redis, KEYS)
    reconciler, dispatcher = _parts(journal)
    looked: list[int] = []
    present = wire.present
    monkeypatch.setattr(wire, "present", lambda pairs: looked.append(len(pairs))
                        or present(pairs))
    beats = [{"id": f"w{i}", "ts": 1, "queues": ["default"], "executors": 256}
             for i in range(8)]
    reconciler.on_heartbeats(beats, 100)
    reconciler.on_heartbeats([], 300)
    expire_lapsed(reconciler, wire, KEYS, dispatcher, LEASE_MS + 20)
    expire_lapsed(reconciler, wire, KEYS, dispatcher, LEASE_MS + 20 + 2 * HEARTBEAT_MS + 1)
    assert looked == [reconcile.MAX_TAKEN_LOOKUPS]
    assert [journal.table.jobs[job_id].failures for job_id in "abc"] == [1, 1, 1]


def test_junk_in_a_taken_list_is_never_read_and_never_matches(journal):
    """Anyone who can write the list may fill it (a megabyte of junk, a copy of another
    attempt): only the exact message of the current attempt counts, and nothing else in the
    list reaches the controller."""
    redis = fakeredis.FakeRedis()
    wire = ControllerWire(redis, KEYS)
    reconciler, dispatcher = _parts(journal)
    stale = _message(dispatcher, journal, "b").replace(b'"n":1', b'"n":0')
    redis.rpush(KEYS.taken("w", 0), b"x" * 1_000_000, stale, _message(dispatcher, journal, "a"))
    reconciler.on_heartbeats([{"id": "w", "ts": 1, "queues": ["default"], "executors": 1}],
                             100)
    reconciler.on_heartbeats([], 300)
    expire_lapsed(reconciler, wire, KEYS, dispatcher, LEASE_MS + 20)
    expire_lapsed(reconciler, wire, KEYS, dispatcher, LEASE_MS + 20 + 2 * HEARTBEAT_MS + 1)
    assert [journal.table.jobs[job_id].failures for job_id in "abc"] == [0, 1, 1]
