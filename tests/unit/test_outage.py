"""A long Redis outage is logged as it goes on, not only at its first error."""

from __future__ import annotations

import logging

import pytest

from fleet.controller.outage import MAX_BACKOFF_S, Outage
from fleet.errors import TransportError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def outage():
    clock = Clock()
    return Outage(clock=clock, repeat_s=30.0), clock


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fleet.controller"]


def test_a_long_outage_is_said_every_repeat_and_its_end_once(outage, caplog):
    caplog.set_level(logging.INFO, logger="fleet.controller")
    watch, clock = outage
    waits = []
    for _ in range(40):  # a try every 2 s for 80 s
        waits.append(watch.failed(TransportError("ConnectionError: Redis at 127.0.0.1:1 refused")))
        clock.now += 2.0
    lines = _lines(caplog)
    assert lines[0] == "ConnectionError: Redis at 127.0.0.1:1 refused; retrying"
    assert [line.split(" (")[0] for line in lines[1:]] == [
        "Redis still failing after 30 s", "Redis still failing after 60 s"]
    assert "(16 tries)" in lines[1] and "(31 tries)" in lines[2]
    assert waits[0] == pytest.approx(0.1) and max(waits) == MAX_BACKOFF_S
    assert waits == sorted(waits)  # the wait grows, then stays at the cap
    assert watch.down
    assert watch.ended() is True
    assert _lines(caplog)[-1] == "Redis answers again after 80.0 s (40 failed tries)"
    assert not watch.down and watch.ended() is False
    assert len(_lines(caplog)) == 4


def test_a_new_kind_of_error_is_said_at_once_and_a_new_outage_starts_afresh(outage, caplog):
    caplog.set_level(logging.INFO, logger="fleet.controller")
    watch, clock = outage
    watch.failed(TransportError("ConnectionError: connection refused"))
    clock.now += 1.0
    watch.failed(TransportError("ConnectionError: refused, port 2"))  # same kind: not said
    clock.now += 1.0
    watch.failed(TransportError("TimeoutError: timed out"))
    assert len(_lines(caplog)) == 2 and "timed out" in _lines(caplog)[1]
    watch.ended()
    clock.now += 500.0
    assert watch.failed(TransportError("refused again")) == pytest.approx(0.1)
    assert _lines(caplog)[-1] == "refused again; retrying"
