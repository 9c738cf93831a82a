"""The controller lease and the owner record, against the session's private Redis."""

from __future__ import annotations

import subprocess

import pytest
import redis

from fleet.controller import fence as fence_mod
from fleet.controller.fence import Fence, boot_epoch, pid_alive
from fleet.controller.journal import Journal
from fleet.errors import ControllerBusyError, FencedOutError, NotOwnerError
from fleet.keys import Keys
from fleet.state import events as ev
from fleet.transport import ControllerWire
from fleet.wal import open_log
from tests.waiting import wait_until

KEYS = Keys("ns")


@pytest.fixture()
def wire(redis_url):
    return ControllerWire(redis.Redis.from_url(redis_url), KEYS)


def _fence(wire, epoch: int, identity: str, take_over: bool = False) -> Fence:
    return Fence(wire, epoch, "ns", identity, "/data/" + identity, take_over)


def _stall(fence: Fence) -> None:
    """As if the process had been stopped for longer than the lease."""
    fence._refreshed -= fence_mod.LEASE_TTL_MS / 1000 + 1


def test_claim_records_the_owner_without_expiry(wire):
    """The first claim writes the owner hash (identity, epoch, data dir), with no TTL."""
    _fence(wire, 1, "a").claim()
    owner = wire.owner()
    assert (owner["identity"], owner["epoch"], owner["data_dir"]) == ("a", "1", "/data/a")
    assert wire.client.ttl(KEYS.owner) == -1


def test_another_identity_is_refused_after_the_lease_lapsed(wire):
    """With the lease gone but the owner recorded, another data dir gets NotOwnerError."""
    _fence(wire, 1, "a").claim()
    wire.client.delete(KEYS.controller)
    with pytest.raises(NotOwnerError, match="--take-over"):
        _fence(wire, 2, "b").claim()
    assert wire.owner()["identity"] == "a" and wire.lease_holder() is None


def test_take_over_moves_the_owner_and_the_old_controller_is_fenced_on_reclaim(wire):
    """B takes over at a higher epoch and leaves cleanly; A, finding the lease gone, must
    not re-claim it as if Redis had lost its data."""
    a = _fence(wire, 1, "a")
    a.claim()
    wire.client.delete(KEYS.controller)
    b = _fence(wire, boot_epoch(1, wire), "b", take_over=True)
    b.claim()
    assert wire.owner()["epoch"] == "2"
    b.release()
    with pytest.raises(FencedOutError, match="now belongs to data dir '/data/b'"):
        a.check(None)
    assert wire.lease_holder() is None


def test_take_over_is_not_used_again_by_a_reclaim(wire):
    """A controller started with --take-over that later loses its lease to Redis cannot
    take the namespace back from a newer owner."""
    a = _fence(wire, 1, "a", take_over=True)
    a.claim()
    wire.client.delete(KEYS.controller)
    _fence(wire, 2, "b", take_over=True).claim()
    wire.client.delete(KEYS.controller)
    with pytest.raises(FencedOutError):
        a.check(None)


def test_owner_reclaims_when_redis_forgot_everything(wire):
    """Redis flushed: the owner record is gone and the same identity claims again."""
    a = _fence(wire, 3, "a")
    a.claim()
    wire.client.flushall()
    assert a.check(None) == fence_mod.LOST
    assert wire.owner()["identity"] == "a"


def test_boot_epoch_is_above_the_log_the_owner_and_the_lease(wire):
    """The epoch only grows: max(log, owner record, lease) + 1."""
    assert boot_epoch(4, wire) == 5
    _fence(wire, 7, "a").claim()
    assert boot_epoch(4, wire) == 8
    wire.client.hset(KEYS.owner, "epoch", "not a number")
    assert boot_epoch(2, wire) == 8  # from the lease


def test_commit_after_a_stall_is_refused_once_another_controller_holds_the_lease(
        wire, tmp_path):
    """A controller stopped past its lease and resumed between its read and its commit
    records nothing: the writer's guard asks Redis first and the newer holder fences it."""
    log = open_log(str(tmp_path))
    journal = Journal(log.table, log.writer)
    a = _fence(wire, 1, "a")
    a.claim()
    log.writer.guard = a.confirm
    journal.record(ev.booted(1, 0))
    journal.commit()
    _stall(a)
    wire.client.delete(KEYS.controller)
    _fence(wire, 2, "b", take_over=True).claim()
    journal.record(ev.booted(9, 1))
    with pytest.raises(FencedOutError):
        journal.commit()
    log.close()
    assert open_log(str(tmp_path)).table.last_seq == 1


def test_commit_without_a_stall_does_not_ask_redis(wire, tmp_path, monkeypatch):
    """The guard costs nothing while the lease was confirmed recently."""
    a = _fence(wire, 1, "a")
    a.claim()
    monkeypatch.setattr(wire, "lease_holder", lambda: pytest.fail("asked Redis"))
    a.confirm()


def test_busy_refusal_says_when_the_lease_frees_itself(wire):
    """A live holder: ControllerBusyError with its pid and the lease's remaining TTL."""
    holder = _fence(wire, 1, "a")
    holder.value = b'{"epoch": 1, "pid": 1, "host": "elsewhere", "token": "t"}'
    holder.claim()
    with pytest.raises(ControllerBusyError, match=r"pid 1 on elsewhere.*frees itself within"):
        _fence(wire, 2, "a").claim()


def test_a_zombie_is_not_alive():
    """A child that exited but was not reaped reads as dead; a running one as alive."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert pid_alive(child.pid)
        child.kill()
        # killed, not reaped: a zombie
        wait_until(lambda: pid_alive(child.pid), 10, until=lambda alive: not alive,
                   what="the killed child read as dead", poll_s=0.01)
        assert child.poll() is not None  # only now reaped
    finally:
        child.kill()
        child.wait()


def test_reclaim_over_an_older_owner_record_from_a_rolled_back_redis(wire):
    """Redis rolled back to before B's take-over names A at a lower epoch: B, re-claiming
    its vanished lease, keeps the namespace (the newer epoch wins) and A stays fenced."""
    a = _fence(wire, 2, "a")
    a.claim()
    wire.client.delete(KEYS.controller)
    b = _fence(wire, 3, "b", take_over=True)
    b.claim()
    wire.client.hset(KEYS.owner, mapping={"identity": "a", "epoch": "2"})  # the rollback
    wire.client.delete(KEYS.controller)
    assert b.check(None) == fence_mod.LOST
    assert wire.owner()["identity"] == "b" and wire.owner()["epoch"] == "3"
    with pytest.raises(FencedOutError):
        a.check(wire.lease_holder())


def test_a_lease_key_without_expiry_is_named_in_the_refusal(wire):
    """A lease set by hand without a TTL never frees itself: the refusal says to delete it."""
    wire.client.set(KEYS.controller, b'{"epoch": 1, "pid": 1, "host": "elsewhere"}')
    with pytest.raises(ControllerBusyError, match=r"\{ns\}:controller has no expiry"):
        _fence(wire, 2, "a").claim()


def test_take_over_never_displaces_a_live_lease(wire):
    """--take-over against a live holder is refused like any start, and says why."""
    holder = _fence(wire, 1, "a")
    holder.value = b'{"epoch": 1, "pid": 1, "host": "elsewhere", "token": "t"}'
    holder.claim()
    with pytest.raises(ControllerBusyError, match="never a live lease"):
        _fence(wire, 2, "b", take_over=True).claim()
    assert wire.owner()["identity"] == "a"


def test_a_starting_controller_waits_out_redis_refusing_writes_for_memory(monkeypatch):
    from fleet.controller import fence as fence_module
    from fleet.errors import TransportError

    monkeypatch.setattr(fence_module.time, "sleep", lambda s: None)

    class Refusing:
        def __init__(self, refusals, error):
            self.refusals, self.error, self.claims = refusals, error, 0

        def claim(self):
            self.claims += 1
            if self.claims <= self.refusals:
                raise TransportError(self.error)

    oom = Refusing(3, "Redis error: command not allowed when used memory > 'maxmemory'.")
    fence_module.claim_when_writable(oom)
    assert oom.claims == 4
    wrong = Refusing(1, "Redis refused the credentials: WRONGPASS")
    with pytest.raises(TransportError, match="credentials"):
        fence_module.claim_when_writable(wrong)
    assert wrong.claims == 1
    endless = Refusing(10**9, "Redis error: OOM command not allowed")
    with pytest.raises(TransportError, match="OOM"):
        fence_module.claim_when_writable(endless, patience_s=0)


def test_a_failover_that_restored_an_older_lease_is_reclaimed_not_fatal(wire):
    """A replica promoted without the last writes holds the previous controller's lease (a
    lower epoch, same data dir): the controller re-claims as itself instead of exiting."""
    old = _fence(wire, 4, "a")
    old.claim()
    stale = wire.lease_holder()
    wire.client.delete(KEYS.controller)
    new = _fence(wire, 5, "a")
    new.claim()
    wire.client.set(KEYS.controller, stale, px=5000)  # the failover's rollback
    wire.client.hset(KEYS.owner, mapping={"identity": "a", "epoch": "4"})
    assert new.check(wire.lease_holder()) == fence_mod.LOST
    assert wire.lease_holder() == new.value and wire.owner()["epoch"] == "5"
    assert new.check(wire.lease_holder()) == fence_mod.HELD


def test_a_restored_older_lease_does_not_win_over_a_newer_owner(wire):
    """The re-claim over an older lease is still refused when the owner record names a
    newer controller of another data dir."""
    a = _fence(wire, 4, "a")
    a.claim()
    stale = wire.lease_holder()
    wire.client.delete(KEYS.controller)
    b = _fence(wire, 5, "b", take_over=True)
    b.claim()
    wire.client.hset(KEYS.owner, mapping={"identity": "c", "epoch": "9"})
    wire.client.set(KEYS.controller, stale, px=5000)
    with pytest.raises(FencedOutError):
        b.check(wire.lease_holder())
