"""The controller's side of the Redis wire (docs/protocol.md); the client's is client.py.

Every redis-py error is translated into TransportError (``connect.translated``), so no
caller imports redis. One read pipeline and one write pipeline per controller loop
iteration, and while work keeps coming the write of one iteration and the read of the next
share a pipeline (``exchange``): the controller pays one round trip per batch, however many
jobs the batch holds. The exchange is written and read through a ``Pipe`` (pipe.py: hiredis
packs the commands, the replies are read raw) rather than redis-py's ``Pipeline``, whose
command objects, packing and retry wrapper cost the controller more than the commands; a client
without a connection pool of its own (a cluster client) keeps the ``Pipeline``. The ``Pipe``
never sends a failed exchange again by itself, as redis-py's retry would: the loop decides (a
resent write could push a message twice).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from ..keys import CANCEL_TTL_S, RECEIPT_TTL_S, REPLY_TTL_S, Keys
from .bounded import READ_LISTS, READ_LISTS_SHA, Item, ReadLimits, bounded
from .connect import master_address, translated
from .pipe import Command, Commands, Pipe, refused

log = logging.getLogger("fleet.transport")

# Outcomes of ControllerWire.claim_lease, and its modes.
OK, BUSY, OWNED, NEWER = "ok", "busy", "owned", "newer"
FIRST_CLAIM, TAKE_OVER, RECLAIM = "first", "take-over", "reclaim"

# KEYS: lease, owner. ARGV: value, ttl_ms, identity, epoch, mode, old value ("" = the key
# must be free), host, pid, data_dir, ts. Mode: FIRST_CLAIM (another identity is refused),
# TAKE_OVER, or RECLAIM (after the lease vanished: another identity recorded at a lower epoch
# is a stale record, from a Redis rolled back to before this controller's take-over). The
# lease is checked first so that a live holder is reported as such; the owner record is
# written only with the lease.
_CLAIM_LUA = """
if ARGV[6] == '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 'busy' end
elseif redis.call('GET', KEYS[1]) ~= ARGV[6] then return 'busy' end
local owner = redis.call('HGET', KEYS[2], 'identity')
local owner_epoch = tonumber(redis.call('HGET', KEYS[2], 'epoch') or '0') or 0
local epoch = tonumber(ARGV[4])
local other = owner and owner ~= ARGV[3]
if other and ARGV[5] == 'first' then return 'owned' end
if owner_epoch > epoch or (other and owner_epoch == epoch) then return 'newer' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'identity', ARGV[3], 'epoch', ARGV[4], 'host', ARGV[7],
           'pid', ARGV[8], 'data_dir', ARGV[9], 'ts', ARGV[10])
return 'ok'
"""


@dataclass(frozen=True)
class Claim:
    """Who claims a namespace: the data dir's identity, the boot epoch and where it runs."""

    identity: str
    epoch: int
    host: str
    pid: int
    data_dir: str


@dataclass
class Inbox:
    """What one controller read found in Redis."""

    intake: list[Item] = field(default_factory=list)
    acks: list[Item] = field(default_factory=list)
    control: list[Item] = field(default_factory=list)
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


class ControllerWire:
    """The controller's reads and writes. ``client`` may be fakeredis in unit tests."""

    def __init__(self, client: redis.Redis, keys: Keys, limits: ReadLimits | None = None
                 ) -> None:
        self.client = client
        self.keys = keys
        self.limits = limits or ReadLimits()
        self._scripts: bool | None = None  # can the server run the bounded read? (first read)
        # Before every write but the lease scripts: the fence's confirm (controller/fence.py)
        self.guard: Callable[[], None] = _no_guard
        self._pipe = Pipe(client) if isinstance(client, redis.Redis) else None

    @translated
    def read(self, intake_n: int, acks_n: int, queues: Iterable[str]) -> Inbox:
        """Peek at intake, acks and control, the ready lengths and the lease, in one trip."""
        queues = list(queues)
        try:
            return self._read_once(intake_n, acks_n, queues)
        except redis.exceptions.NoScriptError:
            self.client.script_load(READ_LISTS)  # a Redis restarted empty, or flushed
            return self._read_once(intake_n, acks_n, queues)

    def _read_once(self, intake_n: int, acks_n: int, queues: list[str]) -> Inbox:
        pipe = self.client.pipeline(transaction=False)
        self._add_reads(pipe, intake_n, acks_n, queues)
        return self._inbox(pipe.execute(), queues)

    def _inbox(self, replies: list[Any], queues: list[str]) -> Inbox:
        if self._scripts:
            (intake, acks, control), lease, *lengths = replies[:-1]
        else:
            intake, acks, control, lease, *lengths = replies[:-1]
        return Inbox(bounded(intake, self.limits), bounded(acks, self.limits),
                     bounded(control, self.limits), dict(zip(queues, lengths, strict=True)),
                     lease)

    @translated
    def write(self, out: Outbox) -> None:
        """Send receipts, replies and messages and trim what was read: after the commit."""
        if out.empty:
            return
        self.guard()
        pipe = self.client.pipeline(transaction=False)
        self._add_writes(pipe, out)
        pipe.execute()

    @translated
    def exchange(self, out: Outbox, intake_n: int, acks_n: int, queues: Iterable[str]
                 ) -> Inbox:
        """``write(out)`` then the next ``read`` in one round trip: the ready lengths include
        the messages just pushed, and nothing just trimmed is read again."""
        queues = list(queues)
        self.guard()
        commands: list[Command] = []
        if not out.empty:
            self._add_writes(Commands(commands), out)
        written = len(commands)
        self._add_reads(Commands(commands), intake_n, acks_n, queues)
        try:
            return self._inbox(_replies(self.client, self._pipe, commands)[written:], queues)
        except redis.exceptions.NoScriptError:
            # The writes ran (a pipeline runs every command; the first error is raised after):
            # only the read is done again, never the writes.
            self.client.script_load(READ_LISTS)
            return self.read(intake_n, acks_n, queues)

    def _add_reads(self, pipe: Any, intake_n: int, acks_n: int, queues: list[str]) -> None:
        if self._scripts is None:
            self._scripts = self._can_run_scripts()
        keys, limits = self.keys, self.limits
        if self._scripts:
            # EVALSHA: the body is sent only when Redis has lost its script cache (NOSCRIPT).
            pipe.evalsha(READ_LISTS_SHA, 3, keys.intake, keys.acks, keys.control, intake_n,
                         acks_n, limits.control_n, limits.batch_bytes,
                         limits.max_message_bytes, limits.head_bytes)
        else:
            pipe.lrange(keys.intake, 0, intake_n - 1)
            pipe.lrange(keys.acks, 0, acks_n - 1)
            pipe.lrange(keys.control, 0, limits.control_n - 1)
        pipe.get(keys.controller)
        for queue in queues:
            pipe.llen(keys.ready(queue))
        pipe.delete(keys.wake)

    def _can_run_scripts(self) -> bool:
        try:
            self.client.script_load(READ_LISTS)
        except redis.ResponseError:
            log.warning("Redis runs no scripts: the controller's reads are bounded by count, "
                        "not by bytes")
            return False
        return True

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
        """Block until a wake-up (or ``timeout_s``), then ``read``, in one round trip: Redis
        runs the rest of a pipeline once its BLPOP returns, so the read sees what the wake-up
        announced (an enqueue into an idle controller reaches its ready list a trip sooner)."""
        queues = list(queues)
        pipe = self.client.pipeline(transaction=False)
        pipe.blpop([self.keys.wake], timeout=timeout_s)
        self._add_reads(pipe, intake_n, acks_n, queues)
        try:
            return self._inbox(pipe.execute()[1:], queues)
        except redis.exceptions.NoScriptError:
            self.client.script_load(READ_LISTS)
            return self.read(intake_n, acks_n, queues)

    @translated
    def present(self, messages: list[tuple[str, bytes]]) -> list[bool]:
        """For each ``(ready key, message)``: is the message still in that list (LPOS)?"""
        pipe = self.client.pipeline(transaction=False)
        for key, message in messages:
            pipe.lpos(key, message)  # type: ignore[arg-type, unused-ignore]  # redis-py says str; bytes work
        return [position is not None for position in pipe.execute()] if messages else []

    @translated
    def remove(self, messages: list[tuple[str, bytes]]) -> list[bool]:
        """LREM each ``(ready key, message)``; True where a copy was there and is now gone."""
        self.guard()
        pipe = self.client.pipeline(transaction=False)
        for key, message in messages:
            pipe.lrem(key, 1, message)  # type: ignore[arg-type, unused-ignore]  # redis-py says str; bytes work
        return [bool(count) for count in pipe.execute()]

    @translated
    def advance_generation(self, value: int) -> tuple[bytes | None, str | None]:
        """Set the rollback marker to ``value``; returns what it held and Redis's run id (None
        where the server does not say, as fakeredis)."""
        self.guard()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.generation, value, get=True)
        pipe.info("server")
        previous, info = pipe.execute(raise_on_error=False)
        if isinstance(previous, redis.ResponseError) and "WRONGTYPE" in str(previous):
            # Someone put another type there: take the key back rather than fail forever.
            self.client.set(self.keys.generation, value)
            previous = None
        elif isinstance(previous, Exception):
            raise previous
        run_id = info.get("run_id") if isinstance(info, dict) else None
        return previous, None if run_id is None else str(run_id)

    @translated
    def master_address(self) -> str | None:
        """``host:port`` of the master this wire talks to now (None where unknown)."""
        return master_address(self.client)

    @translated
    def read_ready(self, queues: Iterable[str], limit: int = 8192) -> dict[str, list[bytes]]:
        """The first ``limit`` messages waiting in the ready list of each queue."""
        queues = list(queues)
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.lrange(self.keys.ready(queue), 0, limit - 1)
        return dict(zip(queues, pipe.execute(), strict=True)) if queues else {}

    @translated
    def read_workers(self) -> list[bytes]:
        """Every registered worker's heartbeat, pruning the dead (whose heartbeat expired)."""
        ids = sorted(cast("set[bytes]", self.client.smembers(self.keys.workers)))
        if not ids:
            return []
        beats = cast("list[bytes | None]",
                     self.client.mget([self.keys.worker(i.decode()) for i in ids]))
        gone = [worker_id for worker_id, beat in zip(ids, beats, strict=True) if beat is None]
        if gone:
            self.client.srem(self.keys.workers, *gone)
        return [beat for beat in beats if beat is not None]

    @translated
    def claim_lease(self, value: bytes, ttl_ms: int, claim: Claim, mode: str = FIRST_CLAIM,
                    old: bytes | None = None) -> str:
        """Take the controller key and the owner record, atomically (one script); with
        ``old``, replace a dead holder's value ``old``, else take only a free key. Returns OK,
        BUSY (held), OWNED (another identity owns the namespace, mode FIRST_CLAIM) or NEWER
        (the owner's epoch is above ``claim.epoch``, or equal from another identity)."""
        args = [value, ttl_ms, claim.identity, claim.epoch, mode,
                old or b"", claim.host, claim.pid, claim.data_dir, int(time.time() * 1000)]
        answer = self._claim_script(keys=[self.keys.controller, self.keys.owner], args=args)
        return answer.decode() if isinstance(answer, bytes) else str(answer)

    @translated
    def lease_holder(self) -> bytes | None:
        """The controller key's current value."""
        return cast("bytes | None", self.client.get(self.keys.controller))

    @translated
    def lease_ttl_ms(self) -> int:
        """Milliseconds until the controller key expires by itself (≤ 0: gone or no expiry)."""
        return int(self.client.pttl(self.keys.controller))

    @translated
    def owner(self) -> dict[str, str] | None:
        """The namespace's owner record (identity, epoch, host, pid, data_dir, ts), or None."""
        found = cast("dict[bytes, bytes]", self.client.hgetall(self.keys.owner))
        return {k.decode(): v.decode(errors="replace") for k, v in found.items()} or None

    @translated
    def refresh_lease(self, value: bytes, ttl_ms: int) -> bool:
        """Extend the lease if it still holds ``value``; False if someone else holds it."""
        return bool(self._refresh_script(keys=[self.keys.controller], args=[value, ttl_ms]))

    @functools.cached_property
    def _refresh_script(self) -> Any:
        return self.client.register_script(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then "
            "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0")

    @functools.cached_property
    def _claim_script(self) -> Any:
        return self.client.register_script(_CLAIM_LUA)

    @translated
    def release_lease(self, value: bytes) -> None:
        """Give the namespace up on a clean shutdown."""
        self.client.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                         "return redis.call('DEL', KEYS[1]) end return 0", 1,
                         self.keys.controller, value)


def _no_guard() -> None:
    """No fence yet (a controller that has not claimed, or a test)."""


def _replies(client: redis.Redis, pipe: Pipe | None, commands: list[Command]) -> list[Any]:
    """The replies of ``commands``, sent in one write: through ``pipe``, else a ``Pipeline``.

    Raises:
        redis.exceptions.NoScriptError: the bounded read's script is not loaded (the
            other commands ran).
        TransportError: the connection failed, or Redis refused a command.
    """
    if pipe is None:
        pipeline: Any = client.pipeline(transaction=False)  # a cluster's, or any client's
        for command in commands:
            pipeline.execute_command(*command)
        return list(pipeline.execute())
    replies = pipe.call(*commands)
    for reply in replies:
        if refused(reply):
            if str(reply).startswith("NoScriptError"):
                raise redis.exceptions.NoScriptError(str(reply))
            raise reply
    return replies
