"""The healer's phases, the witness that may hold a job back, and one heal step over a wire."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import orjson
import pytest

from fleet.config import Settings
from fleet.controller.dispatch import Dispatcher
from fleet.controller.heal import Healer, Phase, Timeline, Witness, heal, purge_stale
from fleet.controller.journal import Journal
from fleet.controller.options import DispatchOptions
from fleet.keys import Keys
from fleet.state import events as ev
from fleet.transport import ControllerWire
from fleet.wal import open_log

HEARTBEAT_MS = 200
LEASE_MS = 2000
KEYS = Keys()


@pytest.fixture
def journal(tmp_path) -> Iterator[Journal]:
    log = open_log(str(tmp_path / "data"), lock=False)
    journal = Journal(log.table, log.writer)
    for job_id in ("a", "b", "c"):
        journal.record(ev.enqueued({"id": job_id, "q": "default", "f": "m:f", "a": [],
                                    "k": {}}, 0, 30.0, 3))
        journal.record(ev.dispatched(job_id, 1, LEASE_MS, 10))
    journal.commit()
    yield journal
    log.close()


def _through_step_two(healer: Healer, start_ms: int = 0) -> list[tuple[str, int]]:
    """Start a heal and take its candidates when they are due."""
    healer.start(start_ms)
    candidates = healer.candidates(start_ms + 2 * HEARTBEAT_MS)
    assert candidates is not None
    return candidates


def test_an_idle_healer_names_no_candidates_and_ignores_reports(journal):
    """Before any start, nothing is due and reported jobs are not collected."""
    healer = Healer(journal, HEARTBEAT_MS)
    assert healer.phase is Phase.IDLE and healer.purge_due is False
    healer.on_reported({"a"})
    assert healer.reported == set()
    assert healer.candidates(10**9) is None
    assert healer.to_redispatch(10**9) == []


def test_candidates_are_due_two_heartbeats_after_start_and_skip_reported_jobs(journal):
    """Step 1 waits two heartbeat periods for reports; step 2 names every in-flight job no
    worker reported, with its current attempt."""
    healer = Healer(journal, HEARTBEAT_MS)
    healer.start(1000)
    assert healer.phase is Phase.WAIT_REPORTS and healer.purge_due is True
    assert healer.candidates(1000 + 2 * HEARTBEAT_MS - 1) is None
    healer.on_reported({"b"})
    assert healer.candidates(1000 + 2 * HEARTBEAT_MS) == [("a", 1), ("c", 1)]


def test_a_restarted_heal_forgets_what_the_heal_before_it_heard(journal):
    """``start`` again (a second Redis loss) resets the reports and the due time."""
    healer = Healer(journal, HEARTBEAT_MS)
    healer.start(0)
    healer.on_reported({"a", "b"})
    healer.start(300)
    assert healer.candidates(2 * HEARTBEAT_MS) is None
    assert healer.candidates(300 + 2 * HEARTBEAT_MS) == [("a", 1), ("b", 1), ("c", 1)]


def test_missing_jobs_are_redispatched_two_heartbeats_after_found_unless_reported(journal):
    """Step 3 waits two more heartbeats and purges again; step 4 returns the missing jobs no
    worker reported meanwhile, once, and the healer goes idle."""
    healer = Healer(journal, HEARTBEAT_MS)
    _through_step_two(healer)
    healer.purge_due = False
    healer.found([("a", 1), ("b", 1)], 1000)
    assert healer.phase is Phase.WAIT_CONFIRM and healer.purge_due is True
    assert healer.candidates(10**9) is None  # step 2 is over
    healer.on_reported({"b"})  # popped just before step 2, and running
    assert healer.to_redispatch(1000 + 2 * HEARTBEAT_MS - 1) == []
    assert healer.to_redispatch(1000 + 2 * HEARTBEAT_MS) == ["a"]
    assert healer.phase is Phase.IDLE and healer.redispatched == 1
    assert healer.to_redispatch(10**9) == []


def test_a_missing_job_that_ended_or_moved_on_meanwhile_is_not_redispatched(journal):
    """A job acked, or dispatched again at a new attempt, after step 2 is left alone."""
    healer = Healer(journal, HEARTBEAT_MS)
    _through_step_two(healer)
    healer.found([("a", 1), ("b", 1), ("c", 1)], 1000)
    journal.record(ev.acked("a", 1, None, {}, 1100))
    journal.record(ev.released("b", 1, "test", 1100))
    journal.record(ev.dispatched("b", 2, 1100 + LEASE_MS, 1100))
    assert healer.to_redispatch(1000 + 2 * HEARTBEAT_MS) == ["c"]


def test_a_job_a_dead_worker_may_hold_waits_for_its_lease_instead(journal):
    """With a witness, a missing job that a worker named and then stopped beating is not
    redispatched (its lease will judge it); without one, it is."""
    in_flight = journal.table.in_flight
    witness = Witness(LEASE_MS, HEARTBEAT_MS)
    # w1 named a (its queues do not matter then) and stopped beating; it never served b's.
    witness.observe([{"id": "w1", "queues": ["other"], "jobs": [["a", 1]]}], 100, in_flight)
    witness.observe([], 300, in_flight)
    for redispatched, healer in ((["b"], Healer(journal, HEARTBEAT_MS, witness)),
                                 (["a", "b"], Healer(journal, HEARTBEAT_MS))):
        _through_step_two(healer)
        healer.found([("a", 1), ("b", 1)], 1000)
        assert healer.to_redispatch(1000 + 2 * HEARTBEAT_MS) == redispatched


def test_a_worker_still_beating_that_does_not_name_a_job_does_not_hold_it(journal):
    """A job is held only by a worker that stopped: one named by a live worker, or by
    nobody while every worker of its queue beats, is not held."""
    in_flight = journal.table.in_flight
    witness = Witness(LEASE_MS, HEARTBEAT_MS)
    witness.observe([{"id": "w1", "queues": ["default"], "jobs": [["a", 1]]}], 100, in_flight)
    assert witness.may_hold(in_flight["a"]) is False
    assert witness.may_hold(in_flight["b"]) is False


def test_a_stopped_worker_holds_an_unnamed_job_only_if_it_served_the_queue_after_dispatch(
        journal):
    """An unnamed job may be held by a stopped worker that served its queue and was heard
    after the job was dispatched; not by one of another queue, nor one silent since before."""
    in_flight = journal.table.in_flight
    other = Witness(LEASE_MS, HEARTBEAT_MS)
    other.observe([{"id": "w", "queues": ["other"], "jobs": []}], 100, in_flight)
    other.observe([], 300, in_flight)
    assert other.may_hold(in_flight["a"]) is False
    same = Witness(LEASE_MS, HEARTBEAT_MS)
    same.observe([{"id": "w", "queues": ["default"], "jobs": []}], 100, in_flight)
    same.observe([], 300, in_flight)
    assert same.may_hold(in_flight["a"]) is True
    early = Witness(LEASE_MS, HEARTBEAT_MS)
    early.observe([{"id": "w", "queues": ["default"], "jobs": []}], 5, in_flight)  # before 10
    early.observe([], 300, in_flight)
    assert early.may_hold(in_flight["a"]) is False


def _message(dispatcher: Dispatcher, journal: Journal, job_id: str) -> bytes:
    job = journal.table.in_flight[job_id]
    return dispatcher.message(job, job.attempt, job.dispatched_ms)


def test_a_heal_step_by_step_redispatches_only_the_job_whose_message_is_gone(journal):
    """Over a real wire: the purge runs when due, a job whose message still waits in Redis is
    no candidate for step 4, and step 4 returns a new attempt's message for the lost one."""
    redis = fakeredis.FakeRedis()
    wire = ControllerWire(redis, KEYS)
    dispatcher = Dispatcher(journal, DispatchOptions.of(Settings()))
    redis.rpush(KEYS.ready("default"), _message(dispatcher, journal, "a"),
                orjson.dumps({"id": "gone", "n": 1}))  # a job the table does not hold: stale
    healer = Healer(journal, HEARTBEAT_MS)
    healer.start(0)
    healer.on_reported({"b"})
    assert heal(healer, wire, KEYS, journal.table, {}, dispatcher, 0) == {}
    assert healer.purge_due is False
    assert redis.lrange(KEYS.ready("default"), 0, -1) == [_message(dispatcher, journal, "a")]
    assert heal(healer, wire, KEYS, journal.table, {}, dispatcher, 2 * HEARTBEAT_MS) == {}
    assert healer.missing == {"c": 1}
    out = heal(healer, wire, KEYS, journal.table, {}, dispatcher, 4 * HEARTBEAT_MS)
    assert list(out) == ["default"] and len(out["default"]) == 1
    assert orjson.loads(out["default"][0])["id"] == "c"
    assert journal.table.get("c").attempt == 2  # leased again: a new attempt, no failure
    assert journal.table.get("c").failures == 0


def test_purge_stale_keeps_the_current_attempt_and_a_message_not_yet_running(journal):
    """The purge removes stale copies from Redis and counts them; the current attempt of a
    job nobody runs stays in its list."""
    redis = fakeredis.FakeRedis()
    wire = ControllerWire(redis, KEYS)
    dispatcher = Dispatcher(journal, DispatchOptions.of(Settings()))
    current = _message(dispatcher, journal, "a")
    running = _message(dispatcher, journal, "b")
    redis.rpush(KEYS.ready("default"), current, current, running)
    removed = purge_stale(wire, KEYS, journal.table, {"b": (1, "w1")})
    assert removed == 2  # the second copy of a, and b that w1 already runs
    assert redis.lrange(KEYS.ready("default"), 0, -1) == [current]


def test_a_restart_is_named_before_a_vanished_marker_and_values_count_up():
    """A new run id with the marker gone says "restarted"; each value is one past the last
    written, and an answer that matches it again is no problem."""
    timeline = Timeline()
    assert timeline.next_value() == 1
    assert timeline.check(1, None, "run-a") is None
    assert timeline.next_value() == 2
    assert "restarted" in timeline.check(2, None, "run-b")
    assert timeline.check(3, b"2", "run-b") is None
    assert timeline.next_value() == 4
