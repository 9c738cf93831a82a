"""Single writer: the controller lease key in Redis, with an epoch, and Redis-loss detection.

The key holds ``{"epoch", "pid", "host", "token", "ts"}`` with a short expiry. The controller
refreshes it while it still holds its own token. If the key is gone, Redis lost its data (or
the controller stalled past the expiry): the controller claims it again and heals.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

import orjson

from ..errors import ControllerBusyError
from ..transport import ControllerWire

LEASE_TTL_MS = 5000
REFRESH_EVERY_S = 1.0

HELD = "held"
LOST = "lost"


class Fence:
    """Claims, refreshes and checks the namespace's controller lease."""

    def __init__(self, wire: ControllerWire, epoch: int, namespace: str) -> None:
        self.wire = wire
        self.epoch = epoch
        self.namespace = namespace
        self.host = socket.gethostname()
        self.value = orjson.dumps({"epoch": epoch, "pid": os.getpid(), "host": self.host,
                                   "token": uuid.uuid4().hex, "ts": int(time.time() * 1000)})
        self._refreshed = 0.0

    def claim(self) -> None:
        """Take the lease, or take it over from a dead controller on this host.

        Raises:
            ControllerBusyError: a live controller holds the namespace.
        """
        if self.wire.claim_lease(self.value, LEASE_TTL_MS):
            self._refreshed = time.monotonic()
            return
        holder = self.wire.lease_holder()
        info = _parse(holder)
        if (holder is not None and self._holder_is_dead(info)
                and self.wire.take_over_lease(holder, self.value, LEASE_TTL_MS)):
            self._refreshed = time.monotonic()
            return
        if holder is None and self.wire.claim_lease(self.value, LEASE_TTL_MS):
            return
        raise ControllerBusyError(
            f"namespace {self.namespace!r} is held by another controller (pid "
            f"{info.get('pid')} on {info.get('host')}, epoch {info.get('epoch')}); "
            "only one controller may run per namespace")

    def _holder_is_dead(self, info: dict) -> bool:
        if info.get("host") != self.host or not isinstance(info.get("pid"), int):
            return False
        if info["pid"] == os.getpid():
            return True
        try:
            os.kill(info["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def check(self, current: bytes | None) -> str:
        """Given the key's value as just read: HELD, or LOST if Redis lost it (re-claimed).

        Raises:
            ControllerBusyError: another controller took the namespace over (fenced out).
        """
        if current is None:
            self.claim()
            return LOST
        if current != self.value:
            info = _parse(current)
            raise ControllerBusyError(f"fenced out: controller pid {info.get('pid')} on "
                                      f"{info.get('host')} now holds namespace "
                                      f"{self.namespace!r}")
        if time.monotonic() - self._refreshed >= REFRESH_EVERY_S:
            if not self.wire.refresh_lease(self.value, LEASE_TTL_MS):
                return self.check(self.wire.lease_holder())
            self._refreshed = time.monotonic()
        return HELD

    def release(self) -> None:
        self.wire.release_lease(self.value)


def _parse(value: bytes | None) -> dict:
    try:
        info = orjson.loads(value) if value else {}
    except orjson.JSONDecodeError:
        info = {}
    return info if isinstance(info, dict) else {}
