"""A step of the controller's wall clock moves neither leases nor retention (a fake clock pair)."""

from __future__ import annotations

import fakeredis
import orjson
import pytest

from fleet.clock import RunClock
from fleet.config import Settings
from fleet.controller import Controller
from fleet.controller.retention import Retention
from fleet.keys import Keys
from fleet.protocol.signing import BEAT, Seal
from fleet.state import COMPLETED, IN_FLIGHT, JobTable
from fleet.state import events as ev
from fleet.wal import open_log

HOUR_MS = 3_600_000
LEASE_S = 30.0
RETENTION_S = 3600.0


class FakeTime:
    """A wall clock and a monotonic clock that tests move apart."""

    def __init__(self) -> None:
        self.wall_ms = 1_764_000_000_000
        self.mono_ms = 5_000

    def advance(self, ms: int) -> None:
        self.wall_ms += ms
        self.mono_ms += ms


@pytest.fixture()
def fake_time():
    return FakeTime()


@pytest.fixture()
def controller(tmp_path, fake_time):
    settings = Settings(data_dir=str(tmp_path / "data"), metrics_port=0, lease_s=LEASE_S,
                        retention_s=RETENTION_S)
    clock = RunClock(lambda: fake_time.wall_ms, lambda: fake_time.mono_ms)
    ctl = Controller(settings, redis_client=fakeredis.FakeRedis(), clock=clock,
                     fork_snapshots=False)
    ctl.start(serve_metrics=False)
    yield ctl
    ctl.close()


def _enqueue_and_dispatch(ctl: Controller, job_id: str = "j") -> None:
    spec = {"id": job_id, "q": "default", "f": "m:f", "a": [], "k": {}}
    ctl.journal.record(ev.enqueued(spec, ctl.clock(), 30.0, 0))
    ctl.step()
    assert ctl.journal.table.get(job_id).state == IN_FLIGHT


def test_run_clock_ignores_wall_steps_and_reports_them(fake_time):
    """The run clock follows the monotonic clock; ``new_step_ms`` tells a step once."""
    clock = RunClock(lambda: fake_time.wall_ms, lambda: fake_time.mono_ms)
    start = clock()
    fake_time.wall_ms -= HOUR_MS
    assert clock() == start
    assert clock.new_step_ms(1000) == -HOUR_MS
    fake_time.advance(10)
    assert clock() == start + 10
    assert clock.new_step_ms(1000) is None


def test_run_clock_starts_no_earlier_than_its_floor(fake_time):
    """Started an hour behind the log's latest time, the run clock goes on from the log; the
    step it started with is reported at once, and the wall clock's return as a step later."""
    floor = fake_time.wall_ms
    fake_time.wall_ms -= HOUR_MS
    clock = RunClock(lambda: fake_time.wall_ms, lambda: fake_time.mono_ms, floor_ms=floor)
    assert clock() == floor
    assert clock.behind_floor_ms == HOUR_MS
    assert clock.new_step_ms(1000) is None  # already told, as behind_floor_ms
    fake_time.advance(500)
    assert clock() == floor + 500
    fake_time.wall_ms += HOUR_MS
    assert clock.new_step_ms(1000) == 0  # back in step with the run clock
    ahead = RunClock(lambda: fake_time.wall_ms, lambda: fake_time.mono_ms, floor_ms=floor)
    assert ahead() == fake_time.wall_ms and ahead.behind_floor_ms == 0  # a floor behind: unused


def test_a_floor_the_wall_clock_stays_behind_is_given_back_at_90_percent_speed(fake_time):
    """Started an hour ahead of a wall clock that is right (the run before kept to a clock
    that was ahead), the run clock runs slow until it meets the wall clock: it never steps
    back, the give-back is not reported as a step, and then it keeps time again."""
    fake_time.wall_ms -= HOUR_MS
    clock = RunClock(lambda: fake_time.wall_ms, lambda: fake_time.mono_ms,
                     floor_ms=fake_time.wall_ms + HOUR_MS)
    readings, steps = [clock()], []
    for _ in range(11 * 3600):  # eleven hours, one pay_back a second (as housekeeping does)
        fake_time.advance(1000)
        clock.pay_back(1000)
        readings.append(clock())
        steps.append(clock.new_step_ms(1000))
    assert readings == sorted(readings)  # never back
    assert max(b - a for a, b in zip(readings, readings[1:], strict=False)) == 1000
    assert min(b - a for a, b in zip(readings, readings[1:], strict=False)) == 900
    assert 0 <= clock() - fake_time.wall_ms <= 1000 + 10 and clock.debt_ms <= 1000 + 10
    assert steps == [None] * len(steps)
    fake_time.advance(5000)
    clock.pay_back(1000)
    before = clock()
    fake_time.advance(1000)
    assert clock() - before == 1000  # paid back: full speed


def test_a_floor_is_not_given_back_once_the_wall_clock_comes_back(fake_time):
    """Started during a step back (the floor right), the run clock runs slow only until the
    wall clock returns, then keeps full speed: what was due after a record stays due."""
    floor = fake_time.wall_ms
    fake_time.wall_ms -= HOUR_MS
    clock = RunClock(lambda: fake_time.wall_ms, lambda: fake_time.mono_ms, floor_ms=floor)
    for _ in range(10):
        fake_time.advance(1000)
        clock.pay_back(1000)
    assert clock() == floor + 1000 + 9 * 900  # the first second at speed, nine slow
    fake_time.wall_ms += HOUR_MS  # the step ends
    clock.pay_back(1000)
    before = clock()
    fake_time.advance(10_000)
    clock.pay_back(1000)
    assert clock() - before == 10_000


def test_a_floor_more_than_a_day_ahead_is_refused(fake_time):
    """A log dated far in the future (a clock once set to the year 3000) cannot hold every
    later run there: the run clock follows the wall clock and says why."""
    clock = RunClock(lambda: fake_time.wall_ms, lambda: fake_time.mono_ms,
                     floor_ms=32_503_680_000_000)
    assert clock() == fake_time.wall_ms and clock.behind_floor_ms == 0
    assert clock.floor_refused_ms > 24 * HOUR_MS


def test_table_keeps_the_latest_controller_time_through_a_snapshot():
    """``clock_ms`` is the latest time of a dispatch, failure, expiry, boot or due record that
    changed the table; a record that changes nothing (and so is not logged) leaves it, and a
    snapshot carries it (an older snapshot, without it, loads as 0)."""
    table = JobTable()
    spec = {"id": "j", "q": "default", "f": "m:f", "a": [], "k": {}}
    table.apply(ev.booted(1, 1_000))
    table.apply(ev.enqueued(spec, 9_999_999, 30.0, 3))  # an enqueue time does not count
    assert table.clock_ms == 1_000
    table.apply(ev.dispatched("j", 1, 40_000, 10_000))
    assert table.clock_ms == 10_000
    assert not table.apply(ev.dispatched("j", 1, 90_000, 60_000))  # stale: not logged
    assert not table.apply(ev.due(70_000))  # nothing due: not logged
    assert table.clock_ms == 10_000
    table.apply(ev.expired("j", 1, 25_000, 20_000))
    assert table.clock_ms == 20_000
    assert JobTable.load(table.dump()).clock_ms == 20_000
    old = table.dump()
    del old["clock_ms"]
    assert JobTable.load(old).clock_ms == 0


def test_wall_clock_stepped_back_an_hour_does_not_stretch_a_lease(controller, fake_time):
    """Stepped back 1 h, a lease still ends ``lease_s`` after the dispatch."""
    _enqueue_and_dispatch(controller)
    fake_time.wall_ms -= HOUR_MS
    fake_time.mono_ms += int(LEASE_S * 1000) + 1
    controller.step()
    job = controller.journal.table.get("j")
    assert [a["o"] for a in job.history] == ["released"]  # its message still waited: taken back


def test_wall_clock_stepped_forward_does_not_compact_finished_jobs_early(controller,
                                                                         fake_time):
    """Stepped forward 61 min right after a job finished, its id is still known (a re-sent
    id is a duplicate) until ``retention_s`` of run time has passed."""
    _enqueue_and_dispatch(controller)
    ack = {"id": "j", "n": 1, "o": "ok", "r": None}
    controller.wire.client.rpush(Keys().acks, orjson.dumps(ack))
    controller.step()  # what the last write read along with it
    controller.step()
    assert controller.journal.table.get("j").state == COMPLETED
    fake_time.wall_ms += 61 * 60_000
    fake_time.mono_ms += 2000
    controller.step()
    assert controller.journal.table.get("j") is not None
    fake_time.advance(int(RETENTION_S * 1000))
    controller.step()
    assert controller.journal.table.get("j") is None


def _finish(table: JobTable, job_id: str, at_ms: int) -> None:
    spec = {"id": job_id, "q": "default", "f": "m:f", "a": [], "k": {}}
    table.apply(ev.enqueued(spec, at_ms - 2, 30.0, 0))
    table.apply(ev.dispatched(job_id, 1, at_ms + 30_000, at_ms - 1))
    table.apply(ev.acked(job_id, 1, None, {}, at_ms))


def test_retention_after_a_restart_keeps_earlier_jobs_a_window_of_this_run(tmp_path):
    """A job finished just before a restart whose wall clock jumped ahead 2 h is kept a full
    retention window into the new run, not forgotten at once."""
    table = JobTable()
    _finish(table, "j", 2_000)
    booted_ms = 2_000 + 2 * HOUR_MS
    retention = Retention(table, RETENTION_S, booted_ms)
    assert retention.due(booted_ms + 10, 100) == []
    assert retention.due(booted_ms + HOUR_MS - 10, 100) == []
    assert retention.due(booted_ms + HOUR_MS + 10, 100) == ["j"]


def test_runs_on_clocks_an_hour_apart_forget_no_id_early():
    """What a default chaos run found: a controller started while its clock was an hour
    ahead stamped its finishes an hour ahead; the next one, started a few seconds later (its
    clock still ahead), measured the jobs of the run before those, on the true clock, against
    those stamps, took them for more than an hour old and forgot 11,565 ids at once. Each run
    now keeps the earlier runs' jobs a full window of its own, and its own by its own clock."""
    table = JobTable()
    _finish(table, "true-clock", 10_000)  # a run on the true clock
    _finish(table, "ahead", 20_000 + HOUR_MS)  # a run started an hour ahead
    booted_ms = 30_000 + HOUR_MS  # this run: ahead as well
    retention = Retention(table, RETENTION_S, booted_ms)
    _finish(table, "mine", booted_ms + 5_000)
    for elapsed_ms in (10, 60_000, HOUR_MS - 10):
        assert retention.due(booted_ms + elapsed_ms, 100) == [], elapsed_ms
    assert retention.due(booted_ms + HOUR_MS + 10, 100) == ["true-clock", "ahead"]
    assert retention.due(booted_ms + HOUR_MS + 4_000, 100) == []
    assert retention.due(booted_ms + HOUR_MS + 5_001, 100) == ["mine"]


def test_a_stale_entry_before_the_boot_never_lets_a_later_job_go_early():
    """The earlier runs' part of the line is taken by count, stale entries included, so the
    cut never runs into this run's jobs."""
    table = JobTable()
    spec = {"id": "old", "q": "default", "f": "m:f", "a": [], "k": {}}
    table.apply(ev.enqueued(spec, 900, 30.0, 0))
    table.apply(ev.dispatched("old", 1, 30_000, 950))
    assert table.apply(ev.failed("old", 1, "boom", {}, 0, final=True, at_ms=1_000))
    assert table.apply(ev.retried("old", 1_500))  # dead, retried: its finish entry is stale
    booted_ms = 2_000
    retention = Retention(table, RETENTION_S, booted_ms)
    _finish(table, "new", booted_ms + 1)
    assert retention.due(booted_ms + HOUR_MS + 1, 100) == []


def test_a_controller_started_behind_its_log_checks_seals_by_the_wall_clock(tmp_path,
                                                                         fake_time):
    """Restarted while the wall clock is an hour behind its log, the controller dates seals by
    the wall clock its workers share: a fresh sealed heartbeat is taken, not refused as
    older than the start."""
    settings = Settings(data_dir=str(tmp_path / "data"), metrics_port=0, lease_s=LEASE_S,
                        signing_key="k" * 32)
    redis = fakeredis.FakeRedis()
    first = Controller(settings, redis_client=redis, fork_snapshots=False,
                       clock=RunClock(lambda: fake_time.wall_ms, lambda: fake_time.mono_ms))
    first.start(serve_metrics=False)
    first.close()
    fake_time.wall_ms -= HOUR_MS
    log = open_log(settings.data_dir)
    floor = log.table.clock_ms
    log.close()
    clock = RunClock(lambda: fake_time.wall_ms, lambda: fake_time.mono_ms, floor_ms=floor)
    assert clock.behind_floor_ms > HOUR_MS - 1000
    ctl = Controller(settings, redis_client=redis, clock=clock, fork_snapshots=False)
    ctl.start(serve_metrics=False)
    try:
        fake_time.advance(100)
        body = orjson.dumps({"id": "w1", "ts": fake_time.wall_ms, "queues": ["default"],
                             "executors": 3, "jobs": []})
        redis.sadd(Keys().workers, "w1")
        redis.set(Keys().worker("w1"), Seal.of(settings, BEAT).seal(body, fake_time.wall_ms))
        ctl.housekeeping.read_heartbeats(ctl.clock())
        assert ctl.liveness.executors == 3
        assert ctl.gate.rejected["heartbeat"] == 0
    finally:
        ctl.close()


@pytest.mark.parametrize("bad", ["1764000000000", True, None, 1.5e12, [1], -5])
def test_a_clock_ms_of_the_wrong_type_in_a_snapshot_or_record_moves_nothing(bad):
    """A snapshot's ``clock_ms`` or a record's time that is not a positive int (hand-edited,
    or from a newer fleet) is ignored, never raised on: the floor stays what it was."""
    table = JobTable()
    table.apply(ev.booted(1, 5_000))
    data = table.dump()
    data["clock_ms"] = bad
    assert JobTable.load(data).clock_ms == 0
    table.apply(ev.booted(2, bad))
    assert table.clock_ms == 5_000
