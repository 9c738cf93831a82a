"""Single writer: the controller lease, the namespace's durable owner, and the epoch.

Two keys (docs/redis-keys.md, docs/reliability.md "One owner per namespace"):

- ``{ns}:controller`` — the lease, ``{"epoch", "pid", "host", "token", "ts"}`` with a short
  expiry, refreshed while it still holds this controller's token. If it is gone, Redis lost
  its data (or the controller stalled past the expiry): the controller claims it again and
  heals — unless the owner record says a newer controller took the namespace.
- ``{ns}:owner`` — a hash ``identity, epoch, host, pid, data_dir, ts`` with no expiry: which
  data dir (``fleet.wal.identity``) owns the namespace and at which epoch. A controller with
  another identity is refused (``NotOwnerError``) unless started with ``--take-over``; one
  whose epoch is below the recorded one is fenced out. Both are checked and written in one
  script with the lease, so two controllers cannot both pass.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from ..errors import ControllerBusyError, FencedOutError, NotOwnerError, TransportError
from ..protocol.lease import decode_lease, encode_lease
from ..transport import ControllerWire
from ..transport.redis import BUSY, FIRST_CLAIM, NEWER, OWNED, RECLAIM, TAKE_OVER, Claim

log = logging.getLogger("fleet.controller")

LEASE_TTL_MS = 5000
REFRESH_EVERY_S = 1.0
# A commit after this long without a confirmed refresh first asks Redis whether the lease is
# still ours: a controller resumed after a SIGSTOP must not record anything once fenced out.
CONFIRM_AFTER_S = LEASE_TTL_MS / 1000 / 2

HELD = "held"
LOST = "lost"


OOM_PATIENCE_S = 60.0  # how long a starting controller waits for Redis to take writes


class Fence:
    """Claims, refreshes and checks the namespace's controller lease and owner record."""

    def __init__(self, wire: ControllerWire, epoch: int, namespace: str, identity: str = "",
                 data_dir: str = "", take_over: bool = False) -> None:
        self.wire = wire
        self.epoch = epoch
        self.namespace = namespace
        self.identity = identity
        self.take_over = take_over
        self.host = socket.gethostname()
        self.claim_info = Claim(identity=identity, epoch=epoch, host=self.host,
                                pid=os.getpid(), data_dir=os.path.abspath(data_dir or "."))
        self.value = encode_lease(epoch, os.getpid(), self.host, uuid.uuid4().hex,
                                  int(time.time() * 1000))
        self._refreshed = 0.0
        self._claimed = False

    def claim(self) -> None:
        """Take the lease (from a dead controller on this host too) and the owner record.

        Only the first claim may take the namespace over: a re-claim after Redis lost the
        lease must never take it back from a controller that took it over meanwhile (it
        succeeds over another identity only if that one's recorded epoch is lower: a record
        from a Redis rolled back to before this controller took over).

        Raises:
            ControllerBusyError: a live controller holds the namespace.
            NotOwnerError: another data dir owns the namespace (and no ``--take-over``).
            FencedOutError: a controller with a higher epoch owns the namespace.
        """
        mode = (RECLAIM if self._claimed else TAKE_OVER if self.take_over else FIRST_CLAIM)
        asked = time.monotonic()
        outcome = self.wire.claim_lease(self.value, LEASE_TTL_MS, self.claim_info, mode)
        if outcome == BUSY:
            holder = self.wire.lease_holder()
            if holder is None:
                outcome = self.wire.claim_lease(self.value, LEASE_TTL_MS, self.claim_info, mode)
            elif self._holder_is_dead(decode_lease(holder)):
                outcome = self.wire.claim_lease(self.value, LEASE_TTL_MS, self.claim_info,
                                                mode, old=holder)
        if outcome == BUSY:
            raise self._busy(mode)
        if outcome in (OWNED, NEWER):
            raise self._not_owner(outcome)
        self._claimed = True
        self._refreshed = asked

    def _busy(self, mode: str) -> ControllerBusyError:
        info = decode_lease(self.wire.lease_holder())
        ttl_ms = self.wire.lease_ttl_ms()
        if ttl_ms > 0:
            frees = f"; if it is dead, its lease frees itself within {ttl_ms / 1000:.1f} s"
        elif ttl_ms == -1:  # PTTL -1: set by hand without an expiry; it never frees itself
            frees = (f"; the key {self.wire.keys.controller} has no expiry: delete it if no "
                     "controller runs")
        else:
            frees = "; its lease has just expired: try again"
        if mode == TAKE_OVER:
            frees += " (--take-over moves the ownership, never a live lease)"
        return ControllerBusyError(
            f"namespace {self.namespace!r} is held by another controller (pid "
            f"{info.get('pid')} on {info.get('host')}, epoch {info.get('epoch')}); "
            f"only one controller may run per namespace{frees}")

    def _not_owner(self, outcome: str) -> Exception:
        owner = self.wire.owner() or {}
        who = (f"data dir {owner.get('data_dir')!r} on {owner.get('host')} (identity "
               f"{owner.get('identity', '?')[:12]}, epoch {owner.get('epoch')})")
        if outcome == NEWER:
            return FencedOutError(f"fenced out: namespace {self.namespace!r} now belongs to "
                                  f"{who}; this controller's epoch is {self.epoch}")
        return NotOwnerError(
            f"namespace {self.namespace!r} belongs to {who}, not to this data dir; if that "
            "controller is gone for good and this data dir is to own the namespace from now "
            "on, start with `fleet controller --take-over` (the other dir's jobs stay in its "
            "own log)")

    def _holder_is_dead(self, info: dict[str, Any]) -> bool:
        if info.get("host") != self.host or not isinstance(info.get("pid"), int):
            return False
        if info["pid"] == os.getpid():
            return True
        return not pid_alive(info["pid"])

    def check(self, current: bytes | None) -> str:
        """Given the key's value as just read: HELD, or LOST if Redis lost it (re-claimed).

        Raises:
            ControllerBusyError: another controller took the namespace over (fenced out).
        """
        if current is None:
            self.claim()
            return LOST
        if current != self.value:
            info = decode_lease(current)
            if self._claimed and _int(info.get("epoch")) < self.epoch:
                self._reclaim_over(current)
                return LOST
            raise FencedOutError(f"fenced out: controller pid {info.get('pid')} on "
                                 f"{info.get('host')} (epoch {info.get('epoch')}) now holds "
                                 f"namespace {self.namespace!r}")
        if time.monotonic() - self._refreshed >= REFRESH_EVERY_S:
            # The lease runs from when Redis refreshed it, at or after ``asked``: a stall
            # between the request and its reply must not count as fresh time.
            asked = time.monotonic()
            if not self.wire.refresh_lease(self.value, LEASE_TTL_MS):
                return self.check(self.wire.lease_holder())
            self._refreshed = asked
        return HELD

    def _reclaim_over(self, stale: bytes) -> None:
        """A lease older than this controller's own claim: a Redis that went back in time
        (a failover that lost the last writes, an older RDB) restored it. Take the namespace
        back as itself; the claim script still refuses if the owner record names a newer
        controller.

        Raises:
            FencedOutError: a newer controller owns or holds the namespace.
        """
        outcome = self.wire.claim_lease(self.value, LEASE_TTL_MS, self.claim_info, RECLAIM,
                                        old=stale)
        if outcome == BUSY:  # the lease changed since it was read: judge what holds it now
            self.check(self.wire.lease_holder())
            return
        if outcome in (OWNED, NEWER):
            raise self._not_owner(NEWER)
        self._refreshed = time.monotonic()

    def confirm(self) -> None:
        """Before a commit and before each write to Redis (``ControllerWire.guard``): if the
        lease was not confirmed for a while (the process was stopped, say), make sure no
        newer controller took the namespace meanwhile. Within CONFIRM_AFTER_S of the last
        confirmed refresh (half the lease) no other controller can hold it yet: free.

        Raises:
            FencedOutError: another controller holds or owns the namespace.
        """
        if time.monotonic() - self._refreshed < CONFIRM_AFTER_S:
            return
        holder = self.wire.lease_holder()
        if holder is not None:
            self.check(holder)
            return
        # The lease vanished: Redis lost its data, or a newer controller came and went.
        # The next step re-claims and heals; only a newer owner forbids this commit.
        owner = self.wire.owner() or {}
        owner_epoch = _int(owner.get("epoch"))
        if owner_epoch > self.epoch or (owner_epoch == self.epoch
                                        and owner.get("identity") != self.identity):
            raise self._not_owner(NEWER)

    def release(self) -> None:
        self.wire.release_lease(self.value)


def claim_when_writable(fence: Fence, patience_s: float = OOM_PATIENCE_S) -> None:
    """``fence.claim()``, waited for while Redis refuses writes for want of memory (OOM under
    ``noeviction``: a condition that passes, unlike a wrong password or no server)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            fence.claim()
            return
        except TransportError as exc:
            if not _out_of_memory(exc) or time.monotonic() > deadline:
                raise
            log.warning("%s; claiming the namespace again in a moment", exc)
            time.sleep(0.5)


def _out_of_memory(exc: TransportError) -> bool:
    text = str(exc)
    return "maxmemory" in text or "OOM" in text


def boot_epoch(log_epoch: int, wire: ControllerWire) -> int:
    """The epoch to boot at: one above the log's, the owner record's and the lease's, so the
    epoch only grows even when the log was cut back or another data dir owned the namespace."""
    owner = wire.owner() or {}
    lease = decode_lease(wire.lease_holder())
    return max(log_epoch, _int(owner.get("epoch")), _int(lease.get("epoch"))) + 1


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs. A zombie (dead, not yet reaped by its parent) is not alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists; /proc still tells a zombie
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return True  # no /proc (not Linux): signal 0 is all there is
    # The state follows the command name in parentheses, which may itself hold ") ".
    state = stat[stat.rfind(b")") + 2:][:1]
    return state not in (b"Z", b"X")


def _int(value: Any) -> int:
    """``value`` (anything a JSON field held) as an int; 0 when it is none."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0

