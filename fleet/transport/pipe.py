"""The worker's Redis wire: one connection, driven directly (executors and supervisors).

Per job an executor needs one round trip (``RPUSH acks`` + ``LPOP ready``), so the client
layer's per-command cost (pool checkout, callbacks, pipeline objects) is a large part of the
cost of a no-op job. ``Pipe`` keeps one redis-py ``Connection`` (so URL options, TLS, AUTH,
SELECT and hiredis all still apply), writes the commands of a round trip in one go and reads
their raw replies in order. ``send`` writes without waiting; the replies are read by the next
``settle`` or ``call``, which lets an ack reach Redis while a job runs.

redis-py's errors stop here: a failed connection raises ``TransportError``, and a command that
Redis refuses (an error reply, e.g. ``OOM`` under ``noeviction``) does not stop the reading:
its reply is a ``Refused`` in its place (the error's class and text in its message), and the
replies after it are still read. Redis runs the other commands of a write even when it
refuses one, so a ``LPOP`` written after a refused ``RPUSH`` has popped its messages, and the
caller must see them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol, TypeGuard

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import TransportError
from ..keys import Keys
from ..urls import SINGLE, parse_redis_url
from .connect import client_for, client_options

Command = tuple[Any, ...]  # a command's name and arguments: ("LPOP", key, count)
RedisClient = redis.Redis  # what ``worker_client`` makes (the worker passes it on unopened)
SOCKET_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 2.0

pack_command: Callable[[Command], bytes] | None
try:
    from hiredis import pack_command
except ImportError:  # redis-py packs without it, only slower
    pack_command = None

# The exit code of a process forked by a job that returned into the executor loop.
FORKED_CHILD_EXIT = 70


class Refused(TransportError):
    """Redis refused one command (an error reply); the connection is fine."""


def refused(reply: object) -> TypeGuard[Refused]:
    """True when ``reply`` is Redis refusing its command (an error reply)."""
    return isinstance(reply, Refused)


class Denied(Refused):
    """Redis refused one command for the user's ACL (``NOPERM``)."""


class BatchRefused(Refused):
    """Redis refused every move of a batch pop (``popped_batch``); ``denied`` if by the ACL."""

    def __init__(self, refusal: Refused) -> None:
        super().__init__(str(refusal))
        self.denied = isinstance(refusal, Denied)


def popped_one(reply: Any) -> Any:
    """A pop's reply, or its refusal raised (nothing was popped then)."""
    if refused(reply):
        raise reply
    return reply


def popped_batch(replies: list[Any], count: int) -> list[bytes]:
    """The messages of a pop of ``count`` (one ``LPOP``, or ``count`` ``LMOVE`` s), from its
    replies; a refusal raised when nothing was popped (``LMOVE`` is refused under a
    ``noeviction`` OOM, or by an ACL without the taken lists)."""
    if count == 1:
        return popped_one(replies[0]) or []
    moved = [reply for reply in replies[:count] if reply is not None]
    found = [reply for reply in moved if not refused(reply)]
    if not found and moved:
        raise BatchRefused(moved[0])
    return found


def worker_client(url: str, namespace: str = Keys().namespace) -> RedisClient:
    """A client with one connection and no hidden retries.

    redis-py's own retries would resend a pipeline whose first copy may already have popped a
    message; the worker's loops retry themselves, with a log line and a backoff instead. On
    a Sentinel group or a Redis Cluster (connect.py) each new connection goes to the master
    of the moment (of ``namespace``'s slot, on a cluster), so a worker follows a failover by
    reconnecting, as it does after any lost connection.

    Raises:
        ConfigError: the URL cannot be parsed.
    """
    target = parse_redis_url(url)
    if target.kind != SINGLE:
        return client_for(target, client_options(
            target, CONNECT_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0), health_check_interval=0), namespace)
    return redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S,
                                socket_connect_timeout=CONNECT_TIMEOUT_S,
                                retry=Retry(NoBackoff(), 0), health_check_interval=0)


def _failed(exc: redis.RedisError) -> TransportError:
    return TransportError(f"{type(exc).__name__}: {exc}")


def _refusal(exc: redis.ResponseError) -> Refused:
    kind = Denied if isinstance(exc, redis.exceptions.NoPermissionError) else Refused
    return kind(f"{type(exc).__name__}: {exc}")


class _Connection(Protocol):
    """What ``Wire`` uses of a redis-py connection (whose methods carry no annotations)."""

    def connect(self) -> None: ...
    def pack_commands(self, commands: tuple[Command, ...]) -> list[bytes]: ...
    def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...
    def read_response(self) -> Any: ...
    def disconnect(self) -> None: ...


# Forks this process descends through since the module was loaded (each child adds one):
# a Pipe made before a fork is a parent's when the count has moved. ``os.getpid()`` is a
# system call, and an executor asked it several times a job.
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


class Pipe:
    """Commands out in one write, replies back in order. A connection failure drops the
    connection (the next command reconnects), so a reply is never read out of turn.

    Only the process that made the Wire may use it: a job that forks and whose child returns
    into the executor loop would otherwise read replies meant for its parent, on the same
    socket. Such a child exits at its first Redis command (``os._exit``).
    """

    def __init__(self, client: RedisClient) -> None:
        # Made, not checked out: it connects on first use, so Redis may be down right now.
        self.client = client
        self.connection: _Connection = client.connection_pool.make_connection()
        self._outstanding = 0
        self._forks = _forks  # as many as this process has been through: it is the owner

    def call(self, *commands: Command) -> list[Any]:
        """Send ``commands`` and return their replies (a refused one as a ``Refused``).

        Raises:
            TransportError: the connection failed (never for an error reply).
        """
        self.settle()
        self.send(*commands)
        return self.settle()

    def send(self, *commands: Command) -> None:
        """Write ``commands`` now; their replies are read later."""
        self.check_owner()
        connection = self.connection
        try:
            # hiredis straight away: redis-py's own packing costs more than the round trip's
            # system calls for the two short commands an executor sends per job.
            packed = ([b"".join(map(pack_command, commands))] if pack_command is not None
                      else connection.pack_commands(commands))
            if getattr(connection, "_sock", None) is None:
                # Connected here, not by send_packed_command, which goes straight to the
                # host and port it was made with: a Sentinel's connection learns the
                # master's address only in connect().
                connection.connect()
            connection.send_packed_command(packed, check_health=False)
        except redis.RedisError as exc:
            self.reset()
            raise _failed(exc) from None
        self._outstanding += len(commands)

    def settle(self) -> list[Any]:
        """Read every outstanding reply; a refused command's reply is a ``Refused``.

        Raises:
            TransportError: the connection failed.
        """
        self.check_owner()
        replies: list[Any] = []
        try:
            while self._outstanding:
                try:
                    replies.append(self.connection.read_response())
                except redis.ResponseError as refusal:
                    replies.append(_refusal(refusal))  # the connection is fine; read on
                self._outstanding -= 1
        except redis.RedisError as exc:
            self.reset()
            raise _failed(exc) from None
        return replies

    def owned(self) -> bool:
        """Whether this process made the Pipe (and is no child forked from its maker)."""
        return self._forks == _forks

    def check_owner(self) -> None:
        """Exit at once in a process forked from the owner (see the class docstring)."""
        if self._forks != _forks:
            os._exit(FORKED_CHILD_EXIT)

    def reset(self) -> None:
        if not self.owned():
            return  # a forked child must not shut down its parent's socket
        self._outstanding = 0
        self.connection.disconnect()

    def close(self, with_client: bool = False) -> None:
        """Drop the connection (and close the client it came from, ``with_client``)."""
        self.reset()
        if with_client and self.owned():
            self.client.close()


class Commands:
    """Collects commands as tuples for ``Pipe.call`` through the names of redis-py's
    ``Pipeline`` methods, so one builder serves both (the controller's wire, redis.py)."""

    def __init__(self, commands: list[Command]) -> None:
        self.commands = commands

    def __len__(self) -> int:
        return len(self.commands)

    def _add(self, *command: Any) -> None:
        self.commands.append(command)

    def evalsha(self, *args: Any) -> None:
        self._add("EVALSHA", *args)

    def lrange(self, key: str, start: int, end: int) -> None:
        self._add("LRANGE", key, start, end)

    def get(self, key: str) -> None:
        self._add("GET", key)

    def llen(self, key: str) -> None:
        self._add("LLEN", key)

    def delete(self, key: str) -> None:
        self._add("DEL", key)

    def lrem(self, key: str, count: int, value: bytes) -> None:
        self._add("LREM", key, count, value)

    def rpush(self, key: str, *values: bytes) -> None:
        self._add("RPUSH", key, *values)

    def expire(self, key: str, ttl_s: int) -> None:
        self._add("EXPIRE", key, ttl_s)

    def ltrim(self, key: str, start: int, end: int) -> None:
        self._add("LTRIM", key, start, end)
