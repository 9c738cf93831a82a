"""A controller resumed after a stall pushes nothing to Redis once another controller holds
its namespace: the wire's guard confirms the lease before every write (docs/scaling.md,
"Standby controllers")."""

from __future__ import annotations

import time

import pytest
import redis

from fleet.controller import fence as fence_mod
from fleet.controller.fence import Fence
from fleet.errors import FencedOutError
from fleet.keys import Keys
from fleet.transport import ControllerWire, Outbox

KEYS = Keys("ns")


@pytest.fixture()
def wire(redis_url):
    wire = ControllerWire(redis.Redis.from_url(redis_url), KEYS)
    wire.client.delete(KEYS.controller, KEYS.owner, KEYS.ready("q"), KEYS.generation)
    return wire


def _deposed(wire: ControllerWire) -> Fence:
    """A's fence, stalled past its lease, and B holding the namespace since."""
    a = Fence(wire, 1, "ns", "a", "/data/a")
    a.claim()
    wire.guard = a.confirm
    a._refreshed -= fence_mod.LEASE_TTL_MS / 1000 + 1
    wire.client.delete(KEYS.controller)
    Fence(ControllerWire(wire.client, KEYS), 2, "ns", "b", "/data/b", take_over=True).claim()
    return a


@pytest.mark.parametrize("write", ["write", "exchange", "remove", "advance_generation"])
def test_a_deposed_controller_pushes_nothing(wire, write):
    """Each of the wire's writes, after a stall past the lease, is refused (FencedOutError)
    before anything reaches Redis."""
    _deposed(wire)
    out = Outbox(messages={"q": [b"m"]})
    calls = {"write": lambda: wire.write(out), "exchange": lambda: wire.exchange(out, 1, 1, ["q"]),
             "remove": lambda: wire.remove([(KEYS.ready("q"), b"m")]),
             "advance_generation": lambda: wire.advance_generation(7)}
    wire.client.rpush(KEYS.ready("q"), b"m")
    with pytest.raises(FencedOutError):
        calls[write]()
    assert wire.client.lrange(KEYS.ready("q"), 0, -1) == [b"m"]
    assert wire.client.get(KEYS.generation) is None


def test_a_refresh_counts_from_when_it_was_asked(wire, monkeypatch):
    """A stall between sending a refresh and reading its reply is not counted as fresh
    lease time: the refresh dates from before the request."""
    a = Fence(wire, 1, "ns", "a", "/data/a")
    a.claim()
    a._refreshed -= fence_mod.REFRESH_EVERY_S
    asked = time.monotonic()
    refresh = wire.refresh_lease

    def slow_refresh(value: bytes, ttl_ms: int) -> bool:
        done = refresh(value, ttl_ms)
        monkeypatch.setattr(time, "monotonic", lambda: asked + 100)  # stopped here
        return done

    monkeypatch.setattr(wire, "refresh_lease", slow_refresh)
    a.check(wire.lease_holder())
    monkeypatch.undo()
    assert a._refreshed <= time.monotonic() and a._refreshed < asked + 1
