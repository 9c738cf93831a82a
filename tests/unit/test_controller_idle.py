"""How the controller waits when it has nothing to do (no Redis server: the wait is recorded)."""

from __future__ import annotations

import threading
import time

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
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        # ``loop.time`` is the time module: another thread's sleeps are not the loop's.
        if threading.current_thread() is threading.main_thread():
            ctl.waits.append(("sleep", seconds))
        else:
            real_sleep(seconds)

    monkeypatch.setattr(loop.time, "sleep", sleep)
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


class _Flight:
    def __init__(self, jobs: int) -> None:
        self.in_flight = dict.fromkeys(range(jobs))


@pytest.mark.parametrize(("acks", "in_flight", "executors", "rate", "pauses"), [
    (3, 16, 8, 5000, True),     # loaded: every executor has work out, few acks read yet
    (3, 15, 8, 5000, False),    # fewer than two jobs per executor out: one might idle
    (63, 100, 8, 5000, True),
    (64, 100, 8, 5000, False),  # the read is already a big batch: step at once
    (0, 2, 0, 5000, True),      # before any heartbeat, executors count as one
    (0, 1, 0, 5000, False),     # one job out
    (0, 500, 8, 1999, False),   # slow jobs: many out, few acks a second, nothing to gather
])
def test_the_controller_pauses_between_steps_only_under_load(acks, in_flight, executors, rate,
                                                             pauses):
    inbox = loop.Inbox(acks=[b"a"] * acks)
    assert loop._gathers(inbox, _Flight(in_flight), executors, rate, 1000) is pauses
    assert loop._gathers(None, _Flight(in_flight), executors, rate, 1000) is False


def test_no_pause_when_the_next_read_holds_a_client_request_or_a_full_batch():
    loaded = _Flight(100)
    assert loop._gathers(loop.Inbox(acks=[b"a"]), loaded, 8, 5000, 1000)
    # a receipt or a control reply would wait out the pause
    assert not loop._gathers(loop.Inbox(acks=[b"a"], intake=[b"r"]), loaded, 8, 5000, 1000)
    assert not loop._gathers(loop.Inbox(control=[b"c"]), loaded, 8, 5000, 1000)
    # a read cut at batch_size is a backlog, not a trickle
    assert not loop._gathers(loop.Inbox(acks=[b"a"] * 10), loaded, 8, 5000, 10)


def test_run_sleeps_the_gather_pause_after_a_busy_step_and_none_after_a_light_one(controller):
    steps = iter([True, True, False])
    in_flight = iter([0, 50, 0, 0])

    def step() -> bool:
        controller.journal.table.in_flight = dict.fromkeys(range(next(in_flight)))
        controller._inbox = loop.Inbox()
        worked = next(steps, None)
        if worked is None:
            controller.stopping = True
            return True
        return worked

    controller.dispatcher.total_rate_per_s = 5000.0
    controller.step = step
    controller._idle = lambda: controller.waits.append(("idle", 0))
    controller.run()
    assert controller.waits == [("sleep", loop.GATHER_S), ("idle", 0)]
