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
from fleet.state import COMPLETED, IN_FLIGHT, JobTable
from fleet.state import events as ev

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


def test_retention_after_a_restart_counts_only_time_the_log_saw(tmp_path):
    """A job finished just before a restart whose wall clock jumped ahead 2 h is kept a full
    retention window into the new run, not forgotten at once."""
    table = JobTable()
    spec = {"id": "j", "q": "default", "f": "m:f", "a": [], "k": {}}
    table.apply(ev.enqueued(spec, 0, 30.0, 0))
    table.apply(ev.dispatched("j", 1, 30_000, 1_000))
    table.apply(ev.acked("j", 1, None, {}, 2_000))
    booted_ms = 2_000 + 2 * HOUR_MS
    retention = Retention(table, RETENTION_S, booted_ms)
    assert retention.cutoff_ms(booted_ms + 10) <= 2_000
    assert retention.cutoff_ms(booted_ms + HOUR_MS - 10) <= 2_000
    assert retention.cutoff_ms(booted_ms + HOUR_MS + 10) > 2_000
