"""``fleet controller --standby``: wait until this controller may serve, then serve
(docs/scaling.md, "Standby controllers").

A standby waits for two things, in order: the data dir's lock (``<data_dir>/LOCK``, held by
the controller running on the same directory) and the namespace's lease
(``{ns}:controller``, held by the live controller wherever it runs). While it waits it reads
the lease and the owner record and tries the lock, nothing else: it opens no log, recovers
nothing and touches no list in Redis. When both are free it builds the controller (recovery)
and claims the namespace as any controller would; if another standby won the race for the
lock or the lease, it goes back to waiting.

Ownership is checked first, once: a standby whose data dir is not the namespace's owner
(another identity in ``{ns}:owner``) is refused at once, as any other controller would be,
unless it was started with ``--take-over``; waiting for hours to then be refused would help
nobody. A standby on the owner's data dir (the same volume, mounted on another host once the
first one is gone) shares its identity and needs no flag.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from ..config import Settings
from ..errors import (
    ControllerBusyError,
    FencedOutError,
    NotOwnerError,
    TransportError,
    WalLockedError,
)
from ..keys import Keys
from ..protocol.lease import decode_lease
from ..transport import ControllerWire, connect
from ..wal.files import DirLock
from ..wal.identity import identity_path
from .fence import pid_alive

if TYPE_CHECKING:
    from .loop import Controller

log = logging.getLogger("fleet.controller")

POLL_S = 0.2


class Standby:
    """Waits for the data dir lock and the namespace lease (reads only)."""

    def __init__(self, settings: Settings, wire: ControllerWire, take_over: bool = False,
                 stopping: Callable[[], bool] = lambda: False, poll_s: float = POLL_S) -> None:
        self.settings = settings
        self.wire = wire
        self.take_over = take_over
        self.stopping = stopping
        self.poll_s = poll_s
        self.host = socket.gethostname()
        self._redis_failing = False

    def check_owner(self) -> None:
        """Refuse at once a data dir that does not own the namespace (no ``--take-over``).

        Raises:
            NotOwnerError: another identity owns the namespace.
        """
        owner = self.wire.owner() or {}
        mine = data_dir_identity(self.settings.data_dir)
        if self.take_over or not owner.get("identity") or owner["identity"] == mine:
            return
        raise NotOwnerError(
            f"namespace {self.settings.namespace!r} belongs to data dir "
            f"{owner.get('data_dir')!r} on {owner.get('host')} (identity "
            f"{owner['identity'][:12]}, epoch {owner.get('epoch')}), not to this data dir; a "
            "standby serves the owner's data dir, or takes the namespace over for good with "
            "`fleet controller --standby --take-over`")

    def wait(self) -> bool:
        """Block until the lock and the lease are free; False if stopped first."""
        announced = False
        while not self.stopping():
            if self._lock_free() and self._lease_free():
                return True
            if not announced:
                log.info("standby for namespace %r (data dir %s): waiting for the data dir "
                         "lock and the lease", self.settings.namespace, self.settings.data_dir)
                announced = True
            time.sleep(self.poll_s)
        return False

    def _lock_free(self) -> bool:
        if not os.path.isdir(self.settings.data_dir):
            return True  # nothing there yet: the controller creates it
        lock = DirLock(self.settings.data_dir)
        try:
            lock.acquire()
        except WalLockedError:
            return False
        lock.release()
        return True

    def _lease_free(self) -> bool:
        try:
            holder = self.wire.lease_holder()
        except TransportError as exc:
            if not self._redis_failing:
                log.warning("%s; standby keeps waiting", exc)
            self._redis_failing = True
            return False
        self._redis_failing = False
        if holder is None:
            return True
        info = decode_lease(holder)
        pid = info.get("pid")
        # A holder on this host that is dead (kill -9) frees nothing by itself for a lease
        # TTL; the claim takes such a lease at once, as a restarted controller does.
        return info.get("host") == self.host and isinstance(pid, int) and not pid_alive(pid)


def data_dir_identity(data_dir: str) -> str | None:
    """The data dir's identity as stored (fleet.wal.identity), read without the lock; None
    when it has none yet or it cannot be read (recovery then says why)."""
    try:
        with open(identity_path(data_dir), "rb") as handle:
            data = orjson.loads(handle.read())
    except (OSError, orjson.JSONDecodeError):
        return None
    identity = data.get("id") if isinstance(data, dict) else None
    return identity if isinstance(identity, str) else None


def start_when_free(settings: Settings, take_over: bool = False) -> Controller | None:
    """Wait as a standby, then recover and claim: the started Controller, or None if a
    SIGTERM / SIGINT came first.

    Raises:
        NotOwnerError: this data dir does not own the namespace (and no ``take_over``).
        FencedOutError: a newer controller owns the namespace.
    """
    from .loop import Controller

    stopped: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _: stopped.append(signum))
                for s in (signal.SIGTERM, signal.SIGINT)}
    wire = ControllerWire(connect(settings.redis_url), Keys(settings.namespace))
    standby = Standby(settings, wire, take_over, lambda: bool(stopped))
    try:
        _check_owner_when_reachable(standby)
        while standby.wait():
            freed = time.monotonic()
            ctl = _try_start(Controller, settings, take_over)
            if ctl is not None:
                log.info("standby now serves namespace %r: %.0f ms from a free lease to "
                         "serving (recovery included)", settings.namespace,
                         (time.monotonic() - freed) * 1000)
                return ctl
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return None


def _check_owner_when_reachable(standby: Standby) -> None:
    while not standby.stopping():
        try:
            standby.check_owner()
            return
        except TransportError as exc:
            log.warning("%s; standby retries", exc)
            time.sleep(1.0)


def _try_start(make: Any, settings: Settings, take_over: bool) -> Controller | None:
    """Recover and claim; None if another process won the lock or the lease meanwhile."""
    try:
        ctl: Controller = make(settings)
    except WalLockedError:
        return None
    try:
        ctl.start(take_over=take_over)
    except FencedOutError:
        ctl.close()
        raise
    except ControllerBusyError as exc:
        log.info("standby lost the race for the namespace (%s); waiting again", exc)
        ctl.close()
        return None
    except BaseException:
        ctl.close()
        raise
    return ctl
