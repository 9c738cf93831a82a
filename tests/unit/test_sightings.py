"""Sightings: which pushed messages the ready lists' lengths show still waiting, and the
witness rule built on them (a worker silent before a message was seen waiting never held it)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.config import Settings
from fleet.controller.journal import Journal
from fleet.controller.liveness import Liveness
from fleet.controller.options import ReconcileOptions
from fleet.controller.reconcile import Reconciler
from fleet.controller.sightings import Sightings
from fleet.state import PENDING
from fleet.state import events as ev
from fleet.wal import open_log

HEARTBEAT_MS = 200
LEASE_MS = 2000


def _push(sightings: Sightings, queue: str, *ids: str) -> None:
    for job_id in ids:
        sightings.leased(queue, job_id, 1)
    sightings.pushed()


def test_messages_within_the_length_are_waiting_and_the_ones_before_were_popped():
    """RPUSH at the tail, LPOP at the head: a length of 2 after 4 pushes means the first two
    were popped (last seen at the read before) and the last two wait now."""
    sightings = Sightings()
    sightings.observe({"q": 0}, 100)
    _push(sightings, "q", "a", "b", "c", "d")
    sightings.observe({"q": 4}, 200)
    sightings.observe({"q": 2}, 300)
    assert sightings.seen_waiting_ms("q", "a", 1) == 200
    assert sightings.seen_waiting_ms("q", "b", 1) == 200
    assert sightings.seen_waiting_ms("q", "c", 1) == 300
    assert sightings.seen_waiting_ms("q", "d", 1) == 300
    assert sightings.seen_waiting_ms("q", "d", 2) is None  # another attempt: never seen


def test_a_message_popped_before_any_read_saw_it_was_never_seen_waiting():
    sightings = Sightings()
    sightings.observe({"q": 0}, 100)
    _push(sightings, "q", "a", "b")
    sightings.observe({"q": 1}, 200)  # "a" went between its push and this read
    assert sightings.seen_waiting_ms("q", "a", 1) is None
    assert sightings.seen_waiting_ms("q", "b", 1) == 200


def test_a_deleted_list_leaves_each_message_seen_at_the_last_read_that_found_it():
    sightings = Sightings()
    _push(sightings, "q", "a", "b")
    sightings.observe({"q": 2}, 100)
    sightings.observe({"q": 2}, 900)
    sightings.observe({"q": 0}, 1000)  # DEL ready:q
    assert sightings.seen_waiting_ms("q", "a", 1) == 900
    assert sightings.seen_waiting_ms("q", "b", 1) == 900


def test_what_a_failed_step_leased_is_never_taken_for_waiting():
    """Its write failed: the messages are not in Redis, so they join no line."""
    sightings = Sightings()
    sightings.leased("q", "a", 1)
    sightings.not_pushed()
    sightings.leased("q", "b", 1)
    sightings.observe({"q": 0}, 50)  # the next step starts: its leases begin afresh
    sightings.pushed()
    sightings.observe({"q": 1}, 100)
    assert sightings.seen_waiting_ms("q", "a", 1) is None
    assert sightings.seen_waiting_ms("q", "b", 1) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=40))
def test_no_message_is_seen_waiting_after_it_was_popped(rounds):
    """A model of one ready list (pushes at the tail, pops at the head, a read between): a
    message is never reported waiting at a read that came after its pop."""
    sightings = Sightings()
    redis_list: list[str] = []
    popped_at: dict[str, int] = {}
    serial = 0
    for now, (pushes, pops) in enumerate(rounds, start=1):
        sightings.observe({"q": len(redis_list)}, now * 10)
        for _ in range(pushes):
            serial += 1
            sightings.leased("q", f"j{serial}", 1)
            redis_list.append(f"j{serial}")
        sightings.pushed()
        for _ in range(min(pops, len(redis_list))):
            popped_at[redis_list.pop(0)] = now * 10 + 5
    sightings.observe({"q": len(redis_list)}, 10_000)
    for job_id, at in popped_at.items():
        seen = sightings.seen_waiting_ms("q", job_id, 1)
        assert seen is None or seen < at, (job_id, seen, at)
    for job_id in redis_list:
        assert sightings.seen_waiting_ms("q", job_id, 1) == 10_000


def _reconciler(tmp_path) -> Reconciler:
    log = open_log(str(tmp_path / "data"), lock=False)
    journal = Journal(log.table, log.writer)
    journal.record(ev.enqueued({"id": "j", "q": "default", "f": "m:f", "a": [], "k": {}},
                               0, 30.0, 3))
    journal.record(ev.dispatched("j", 1, LEASE_MS, 0))
    journal.commit()
    settings = Settings(lease_s=LEASE_MS / 1000, heartbeat_s=HEARTBEAT_MS / 1000)
    return Reconciler(journal, ReconcileOptions.of(settings), random.Random(1),
                      Liveness(HEARTBEAT_MS))


def _lapse(reconciler: Reconciler, now_ms: int) -> None:
    lapsed = reconciler.lapsed(now_ms)
    reconciler.expire(lapsed, [False] * len(lapsed), now_ms)


def test_a_list_deleted_long_after_a_worker_stopped_charges_no_attempt(tmp_path):
    """The worker stopped beating at 100 ms; the message was still seen waiting at 1,500 ms,
    then its list was deleted: the stopped worker cannot have popped it, so the lapse is a
    lost message (released, no failure), not a failed attempt."""
    reconciler = _reconciler(tmp_path)
    sightings = reconciler.witness.sightings
    sightings.leased("default", "j", 1)
    sightings.pushed()
    reconciler.on_heartbeats([{"id": "w", "ts": 1, "queues": ["default"], "jobs": []}], 100)
    reconciler.on_heartbeats([], 300)  # the worker stopped
    sightings.observe({"default": 1}, 1500)
    sightings.observe({"default": 0}, 1600)  # DEL ready:default
    _lapse(reconciler, LEASE_MS + 10)
    _lapse(reconciler, LEASE_MS + 10 + 2 * HEARTBEAT_MS + 1)
    job = reconciler.journal.table.jobs["j"]
    assert job.state == PENDING and job.failures == 0
    assert reconciler.lost_messages == 1


def test_a_worker_that_stopped_just_after_the_last_sighting_may_have_popped_it(tmp_path):
    """Seen waiting at 300 ms, the worker last heard at 250 ms and silent since: it could
    have popped the message before its next heartbeat was due, so the lapse is charged."""
    reconciler = _reconciler(tmp_path)
    sightings = reconciler.witness.sightings
    sightings.leased("default", "j", 1)
    sightings.pushed()
    reconciler.on_heartbeats([{"id": "w", "ts": 1, "queues": ["default"], "jobs": []}], 250)
    sightings.observe({"default": 1}, 300)
    sightings.observe({"default": 0}, 350)
    reconciler.on_heartbeats([], 450)
    _lapse(reconciler, LEASE_MS + 10)
    _lapse(reconciler, LEASE_MS + 10 + 2 * HEARTBEAT_MS + 1)
    assert reconciler.journal.table.jobs["j"].failures == 1
