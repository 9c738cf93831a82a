"""The controller's and the client's side of the Redis wire (docs/protocol.md).

Every redis-py error is translated here into TransportError, so no caller imports redis.
One read pipeline and one write pipeline per controller loop iteration, and while work keeps
coming the write of one iteration and the read of the next share a pipeline (``exchange``):
the controller pays one round trip per batch, however many jobs the batch holds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis

from ..config import mask_url
from ..errors import ConfigError, TransportError
from ..keys import CANCEL_TTL_S, RECEIPT_TTL_S, REPLY_TTL_S, Keys

T = TypeVar("T")


def connect(url: str, timeout_s: float = 5.0) -> redis.Redis:
    """A redis-py client for ``url`` (redis://, rediss:// for TLS, unix://; user:password@).

    Raises:
        ConfigError: the URL cannot be parsed.
    """
    try:
        return redis.Redis.from_url(url, socket_timeout=timeout_s + 5,
                                    socket_connect_timeout=timeout_s, health_check_interval=30)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {mask_url(url)!r}: {exc}") from None


def translated(func: Callable[..., T]) -> Callable[..., T]:
    """Turn redis-py errors raised by ``func`` into TransportError."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except redis.AuthenticationError as exc:
            raise TransportError(f"Redis refused the credentials: {exc}") from None
        except redis.ConnectionError as exc:
            raise TransportError(f"cannot reach Redis: {_one_line(exc)}") from None
        except redis.RedisError as exc:
            raise TransportError(f"Redis error: {_one_line(exc)}") from None

    return wrapper


def _one_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass
class Inbox:
    """What one controller read found in Redis."""

    intake: list[bytes] = field(default_factory=list)
    acks: list[bytes] = field(default_factory=list)
    control: list[bytes] = field(default_factory=list)
    ready_lengths: dict[str, int] = field(default_factory=dict)
    lease: bytes | None = None

    @property
    def empty(self) -> bool:
        return not (self.intake or self.acks or self.control)


@dataclass
class Outbox:
    """What one controller iteration sends once its events are durable."""

    receipts: list[tuple[str, bytes]] = field(default_factory=list)
    replies: list[tuple[str, bytes]] = field(default_factory=list)
    messages: dict[str, list[bytes]] = field(default_factory=dict)
    cancels: list[tuple[str, str]] = field(default_factory=list)
    withdrawn: list[tuple[str, bytes]] = field(default_factory=list)
    trim_intake: int = 0
    trim_acks: int = 0
    trim_control: int = 0

    @property
    def empty(self) -> bool:
        return not (self.receipts or self.replies or self.messages or self.cancels
                    or self.withdrawn or self.trim_intake or self.trim_acks or self.trim_control)


def _inbox(replies: list[Any], queues: list[str]) -> Inbox:
    intake, acks, control, lease, *lengths = replies[:-1]
    return Inbox(intake, acks, control, dict(zip(queues, lengths, strict=True)), lease)


class ControllerWire:
    """The controller's reads and writes. ``client`` may be fakeredis in unit tests."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @translated
    def read(self, intake_n: int, acks_n: int, queues: Iterable[str]) -> Inbox:
        """Peek at intake, acks and control, the ready lengths and the lease, in one trip."""
        queues = list(queues)
        pipe = self.client.pipeline(transaction=False)
        self._add_reads(pipe, intake_n, acks_n, queues)
        return _inbox(pipe.execute(), queues)

    @translated
    def write(self, out: Outbox) -> None:
        """Send receipts, replies and messages and trim what was read: after the commit."""
        if out.empty:
            return
        pipe = self.client.pipeline(transaction=False)
        self._add_writes(pipe, out)
        pipe.execute()

    @translated
    def exchange(self, out: Outbox, intake_n: int, acks_n: int, queues: Iterable[str]
                 ) -> Inbox:
        """``write(out)`` and then the next ``read``, in one round trip instead of two.

        The reads run after the writes, so the ready lengths include the messages just pushed
        and nothing that was just trimmed is read again.
        """
        queues = list(queues)
        pipe = self.client.pipeline(transaction=False)
        written = self._add_writes(pipe, out) if not out.empty else 0
        self._add_reads(pipe, intake_n, acks_n, queues)
        return _inbox(pipe.execute()[written:], queues)

    def _add_reads(self, pipe: Any, intake_n: int, acks_n: int, queues: list[str]) -> None:
        pipe.lrange(self.keys.intake, 0, intake_n - 1)
        pipe.lrange(self.keys.acks, 0, acks_n - 1)
        pipe.lrange(self.keys.control, 0, 99)
        pipe.get(self.keys.controller)
        for queue in queues:
            pipe.llen(self.keys.ready(queue))
        pipe.delete(self.keys.wake)

    def _add_writes(self, pipe: Any, out: Outbox) -> int:
        """Queue the commands that send ``out``; returns how many."""
        before = len(pipe)
        for key, message in out.withdrawn:
            pipe.lrem(key, 1, message)
        for queue, messages in out.messages.items():
            pipe.rpush(self.keys.ready(queue), *messages)
        for worker_id, job_id in out.cancels:
            pipe.rpush(self.keys.cancel(worker_id), job_id)
            pipe.expire(self.keys.cancel(worker_id), CANCEL_TTL_S)
        self._send_answers(pipe, out)
        if out.trim_intake:
            pipe.ltrim(self.keys.intake, out.trim_intake, -1)
        if out.trim_acks:
            pipe.ltrim(self.keys.acks, out.trim_acks, -1)
        if out.trim_control:
            pipe.ltrim(self.keys.control, out.trim_control, -1)
        return len(pipe) - before

    def _send_answers(self, pipe: Any, out: Outbox) -> None:
        for request_id, body in out.receipts:
            pipe.rpush(self.keys.receipt(request_id), body)
            pipe.expire(self.keys.receipt(request_id), RECEIPT_TTL_S)
        for request_id, body in out.replies:
            pipe.rpush(self.keys.reply(request_id), body)
            pipe.expire(self.keys.reply(request_id), REPLY_TTL_S)

    @translated
    def wait_then_read(self, timeout_s: float, intake_n: int, acks_n: int,
                       queues: Iterable[str]) -> Inbox:
        """Block until a client or worker pushes a wake-up (or ``timeout_s`` passes), then
        ``read``, in one round trip.

        Redis runs the rest of a pipeline only once its BLPOP returns, so the read sees what
        the wake-up announced without another trip: a job enqueued into an idle controller
        reaches its ready list one round trip sooner.
        """
        queues = list(queues)
        pipe = self.client.pipeline(transaction=False)
        pipe.blpop([self.keys.wake], timeout=timeout_s)
        self._add_reads(pipe, intake_n, acks_n, queues)
        return _inbox(pipe.execute()[1:], queues)

    @translated
    def present(self, messages: list[tuple[str, bytes]]) -> list[bool]:
        """For each ``(ready key, message)``: is the message still in that list (LPOS)?"""
        pipe = self.client.pipeline(transaction=False)
        for key, message in messages:
            pipe.lpos(key, message)
        return [position is not None for position in pipe.execute()] if messages else []

    @translated
    def remove(self, messages: list[tuple[str, bytes]]) -> list[bool]:
        """LREM each ``(ready key, message)``; True where a copy was there and is now gone."""
        pipe = self.client.pipeline(transaction=False)
        for key, message in messages:
            pipe.lrem(key, 1, message)
        return [bool(count) for count in pipe.execute()]

    @translated
    def read_workers(self) -> list[bytes | None]:
        """Every registered worker's heartbeat (None where it expired), pruning the dead."""
        ids = sorted(self.client.smembers(self.keys.workers))
        if not ids:
            return []
        beats = self.client.mget([self.keys.worker(i.decode()) for i in ids])
        gone = [worker_id for worker_id, beat in zip(ids, beats, strict=True) if beat is None]
        if gone:
            self.client.srem(self.keys.workers, *gone)
        return [beat for beat in beats if beat is not None]

    @translated
    def claim_lease(self, value: bytes, ttl_ms: int) -> bool:
        """SET NX the controller key; True if this controller now holds it."""
        return bool(self.client.set(self.keys.controller, value, nx=True, px=ttl_ms))

    @translated
    def lease_holder(self) -> bytes | None:
        """The controller key's current value."""
        return self.client.get(self.keys.controller)

    @translated
    def refresh_lease(self, value: bytes, ttl_ms: int) -> bool:
        """Extend the lease if it still holds ``value``; False if someone else holds it."""
        return bool(self._refresh_script(keys=[self.keys.controller], args=[value, ttl_ms]))

    @translated
    def take_over_lease(self, old: bytes, value: bytes, ttl_ms: int) -> bool:
        """Replace a dead holder's ``old`` value with ours, atomically."""
        return bool(self._swap_script(keys=[self.keys.controller], args=[old, value, ttl_ms]))

    @functools.cached_property
    def _refresh_script(self) -> Any:
        return self.client.register_script(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then "
            "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0")

    @functools.cached_property
    def _swap_script(self) -> Any:
        return self.client.register_script(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then "
            "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0")

    @translated
    def release_lease(self, value: bytes) -> None:
        """Give the namespace up on a clean shutdown."""
        self.client.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                         "return redis.call('DEL', KEYS[1]) end return 0", 1,
                         self.keys.controller, value)


class ClientWire:
    """What clients and the CLI send: intake requests and control requests.

    A blocking wait is cut into BLPOPs of at most ``WAIT_SLICE_S``, well under the socket
    timeout, so a long receipt or reply wait is never ended by the socket timing out; between
    slices the caller can check that a controller still holds the namespace.
    """

    WAIT_SLICE_S = 1.0

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @translated
    def send_requests(self, bodies: list[bytes]) -> bool:
        """RPUSH intake requests and wake the controller, in one round trip.

        Returns:
            Whether a controller held the namespace's lease as they were pushed.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.controller)
        pipe.rpush(self.keys.intake, *bodies)
        pipe.rpush(self.keys.wake, b"1")
        return pipe.execute()[0] is not None

    @translated
    def send_control(self, body: bytes) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(self.keys.control, body)
        pipe.rpush(self.keys.wake, b"1")
        pipe.execute()

    def close(self) -> None:
        """Close the connection pool; errors on the way out are of no use to anyone."""
        try:
            self.client.close()
        except redis.RedisError:
            pass

    @translated
    def controller_present(self) -> bool:
        """Whether a controller holds the namespace's lease (``{ns}:controller``)."""
        return self.client.exists(self.keys.controller) > 0

    @translated
    def wait(self, key: str, timeout_s: float) -> bytes | None:
        """BLPOP one answer from ``key`` for at most ``min(timeout_s, WAIT_SLICE_S)``; None
        if none came."""
        slice_s = min(max(timeout_s, 0.01), self.WAIT_SLICE_S)
        found = self.client.blpop([key], timeout=slice_s)
        return found[1] if found else None
