"""How the controller waits when it has nothing to do (no Redis server: the wait is recorded)."""

from __future__ import annotations

import fakeredis
import pytest

from fleet.config import Settings
from fleet.controller import Controller, loop
from fleet.state import events as ev

NOW_MS = 1_000_000


@pytest.fixture()
def controller(tmp_path, monkeypatch):
    ctl = Controller(Settings(data_dir=str(tmp_path / "data"), metrics_port=0),
                     redis_client=fakeredis.FakeRedis(), clock=lambda: NOW_MS,
                     fork_snapshots=False)
    ctl.waits = []
    monkeypatch.setattr(loop.time, "sleep", lambda s: ctl.waits.append(("sleep", s)))
    monkeypatch.setattr(ctl.wire, "wait_then_read",
                        lambda timeout_s, *args: ctl.waits.append(("blpop", timeout_s)))
    yield ctl
    ctl.log.close()


def delay(ctl: Controller, job_id: str, due_in_ms: int) -> None:
    spec = {"id": job_id, "q": "default", "f": "m:f", "a": [], "k": {}, "nb": NOW_MS + due_in_ms}
    ctl.journal.record(ev.enqueued(spec, NOW_MS, 30.0, 3))


def test_idle_with_nothing_due_blocks_in_redis(controller):
    controller._idle()
    assert controller.waits == [("blpop", loop.IDLE_WAIT_S)]


def test_a_due_time_past_the_redis_tick_blocks_in_redis(controller):
    """Far enough away, Redis's own timeout is precise enough (it ends on a 100 ms tick)."""
    delay(controller, "later", 500)
    controller._idle()
    assert controller.waits == [("blpop", loop.IDLE_WAIT_S)]


def test_a_due_time_closer_than_the_redis_tick_is_slept_in_short_slices(controller):
    """Redis would end the wait on its next tick, up to 100 ms late: sleep here instead, in
    slices, so that intake is read again within a few ms."""
    delay(controller, "soon", 30)
    controller._idle()
    assert controller.waits == [("sleep", loop.DUE_SLICE_S)]
    delay(controller, "sooner", 2)
    controller._idle()
    assert controller.waits[-1] == ("sleep", 0.002)


def test_a_time_already_due_but_not_acted_on_does_not_spin(controller):
    """Due now yet still waiting (nothing could act on it this step): block in Redis briefly
    rather than loop without waiting."""
    delay(controller, "now", 0)
    controller._idle()
    assert controller.waits == [("blpop", 0.001)]
