"""The supervisor's Redis link: heartbeats (docs/protocol.md §5), its own acks, cancel requests.

Every tick is one pipelined round trip: ``SADD workers``, ``SET worker:<id> EX``, ``RPUSH acks``
(acks the supervisor owes: timeouts, dead executors, cancels, shutdown hand-backs) and
``LPOP cancel:<id> <count>`` (protocol §8). Acks stay in memory until Redis took them; a Redis
outage costs one log line and a backoff, never the worker.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from ..clock import now_ms
from ..errors import TransportError
from ..keys import WORKER_TTL_S, Keys
from ..protocol.heartbeat import encode_heartbeat, encode_progress
from ..protocol.signing import BEAT, Seal, is_sealed
from ..transport.pipe import Command, Pipe, RedisClient, refused
from .handle import RunningJob
from .wire import Identity, RedisHealth, WorkerLog

CANCEL_BATCH = 100


def heartbeat_payload(identity: Identity, pid: int, started_ms: int, queues: Iterable[str],
                      executors: int, jobs: Iterable[RunningJob], done: int,
                      failed: int) -> dict[str, Any]:
    """The value of ``{ns}:worker:<id>`` (``protocol.heartbeat``), as of now, with the latest
    progress of each job that reported one."""
    running: list[list[Any]] = [
        [job.job_id, job.attempt, job.started_ms] if job.progress is None
        else [job.job_id, job.attempt, job.started_ms, encode_progress(*job.progress)]
        for job in jobs]
    return encode_heartbeat(identity.worker_id, identity.host, pid, started_ms, now_ms(),
                            queues, executors, running, done, failed)


class SupervisorLink:
    """The supervisor's one Redis connection."""

    def __init__(self, client: RedisClient, keys: Keys, identity: Identity, heartbeat_s: float,
                 log: WorkerLog, ack_seal: Seal | None = None) -> None:
        self.pipe = Pipe(client)
        self.keys = keys
        self.worker_id = identity.worker_id
        self.ttl_s = max(WORKER_TTL_S, math.ceil(3 * heartbeat_s))
        self.log = log
        self.health = RedisHealth(log)
        self.pending: list[bytes] = []
        self.ack_seal = ack_seal
        self.beat_seal = Seal(ack_seal.keys, BEAT, ack_seal.namespace) if ack_seal else None
        self._beat_ts = 0

    def _sealed(self, acks: list[bytes]) -> list[bytes]:
        """Acks the supervisor made sealed; those an executor handed over already are."""
        seal = self.ack_seal
        if not seal:
            return acks
        return [ack if is_sealed(ack) else seal.seal(ack, now_ms()) for ack in acks]

    def push(self, acks: list[bytes]) -> None:
        """Queue acks and try to push them now (unless backing off after a Redis error)."""
        self.pending.extend(self._sealed(acks))
        if self.pending and self.health.may_try():
            self._send([])

    def beat(self, payload: bytes, measure: Iterable[str] = ()) -> tuple[list[str], int | None]:
        """Announce the worker, push pending acks; return job ids asked to be cancelled and
        how many messages wait in the ready lists of the queues in ``measure`` (None when
        none was asked for or Redis did not say)."""
        if not self.health.may_try():
            return [], None
        if self.beat_seal:
            # Each seal newer than the last (the controller refuses an older one as a replay)
            # across a small step back of the wall clock; a large one is followed at once,
            # or the beats would stay that far ahead, outside the controller's window.
            now = now_ms()
            self._beat_ts = max(now, self._beat_ts + 1) if self._beat_ts - now < 10_000 else now
            payload = self.beat_seal.seal(payload, self._beat_ts)
        ready_keys = [self.keys.ready(queue) for queue in measure]

        # The beat before the id: a controller that reads the set between the two commands
        # finds the id's beat, rather than pruning the id as a worker whose beat expired.
        commands: list[Command] = [("SET", self.keys.worker(self.worker_id), payload,
                                    "EX", self.ttl_s),
                                   ("SADD", self.keys.workers, self.worker_id)]
        commands += [("LLEN", key) for key in ready_keys]
        commands.append(("LPOP", self.keys.cancel(self.worker_id), CANCEL_BATCH))
        results = self._send(commands)
        if not results:
            return [], None
        lengths = results[len(results) - 1 - len(ready_keys):-1]
        queued = (None if not ready_keys or any(refused(n) for n in lengths)
                  else sum(lengths))
        popped = results[-1]
        if not popped or refused(popped):
            return [], queued
        return [raw.decode("utf-8", "replace") for raw in popped], queued

    def _send(self, commands: list[Command]) -> list[Any] | None:
        pushed = len(self.pending)
        if pushed:
            commands = [("RPUSH", self.keys.acks, *self.pending), *commands]
        if not commands:
            return []
        try:
            # Refusals as values: Redis may refuse the RPUSH or SET (OOM) and still run the
            # LPOP of cancel requests, which would be lost with a raised error.
            results = self.pipe.call(*commands)
        except TransportError as exc:
            self.health.failed(exc)
            return None
        refusal = next((r for r in results if refused(r)), None)
        if pushed and not refused(results[0]):
            del self.pending[:pushed]
        if refusal is not None:
            self.health.failed(refusal)
        else:
            self.health.ok()
        return results

    def flush(self, timeout_s: float) -> int:
        """Push what is pending, retrying for up to ``timeout_s``. Returns how many are lost."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            self._send([])
            if self.pending:
                time.sleep(max(0.0, min(self.health.delay_s, deadline - time.monotonic())))
        if self.pending:
            self.log.error("%d ack(s) could not be pushed to Redis; those jobs run again when "
                           "their leases expire", len(self.pending))
        return len(self.pending)

    def deregister(self) -> None:
        """Remove the worker's heartbeat (best effort: it expires anyway)."""
        try:
            self.pipe.call(("SREM", self.keys.workers, self.worker_id),
                           ("DEL", self.keys.worker(self.worker_id)))
        except TransportError:
            pass

    def close(self) -> None:
        self.pipe.close(with_client=True)
