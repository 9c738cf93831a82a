"""One executor process: pop a message, run it, ack, repeat (docs/protocol.md §3, §4).

Round trips are what limit throughput, so after each job its ack and the pop of the next
message go in one write (transport/pipe.py): ``RPUSH acks …; LPOP ready:<q1> <prefetch>``. A
lower priority queue is tried only when the ones before it came back empty; when all are
empty the executor waits in ``BLPOP`` on all of them, 1 s at a time so that it notices a stop
(pushing ``{ns}:wake`` in the same write when a job has just finished, so that the controller
records its ack now). Once a pop found them all empty (*drained*), the next job's ack, that
wake, an ``LLEN`` of each queue and the ``BLPOP`` are one write; more than one message in the
queues' lengths brings the pops back (``_wait_for_one``). The acks on their way, and those
whose replies are still to be read, are the executor's outbox (outbox.py).
With ``prefetch`` > 1 the ack of each job is written before the next prefetched job starts,
and the replies of those writes are read at the next pop (no job waits for Redis to answer).
``prefetch`` 0 (the default) adapts: an executor pops up to ``AUTO_PREFETCH`` messages while
its last ``AUTO_PREFETCH`` jobs each ran under ``SHORT_JOB_S``, and one at a time as soon as
one did not. A prefetched job's lease is the one its dispatch recorded; a message held longer
than ``hold_limit_s`` (half a heartbeat period, or of a lease if shorter) is handed back
(``rel``) unrun (docs/worker.md, "Prefetch"). A batch is popped with one ``LMOVE`` per message
into the executor's own list ``{ns}:taken:<worker>:<slot>``, and each message leaves it
(``LREM``) in the write sent before its job starts: if the whole worker dies, the controller
finds there what it took and never started, and dispatches those again uncharged.

The executor tells its supervisor over a Pipe what it starts (teller.py): ``("s", id, n,
started_ms, timeout_s, held, done, owed)``, where ``held`` are the prefetched messages not yet
started and ``done`` is ``(id, n, ok)`` of the job finished just before, or None; a finished
job followed by a wait (or a failure of Redis) is told as ``("f", id, n, ok, owed)``. Either is
told only once the job's ack is written: the supervisor stops owing it then, but keeps a copy
of it until Redis has confirmed it. ``owed`` is ``(reset, ack)``: the finished job's ack (or
None), and whether every ack told before is confirmed (the supervisor's copies go). Killed
before its acks are confirmed, the executor leaves them with its supervisor, who pushes them:
an ack Redis refused (OOM, an ACL) does not die with the process. Each ack is copied once.
Prefetched messages handed back for being held too long are told as ``("r",)``; on a clean exit
the acks it could not push, as ``("x", acks)``. The running job's latest progress goes the same
way, from a thread of its own (progress.py): ``("p", id, n, fraction, message, at_ms)``; a lock
keeps its events and the loop's whole on the Pipe.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

from ..clock import now_ms
from ..errors import TransportError
from ..keys import TAKEN_TTL_S, Keys
from ..protocol.dispatch import decode_dispatch
from ..transport.pipe import (
    BatchRefused,
    Command,
    Pipe,
    RedisClient,
    popped_batch,
    popped_one,
    refused,
)
from .handback import hand_back, hand_back_held
from .logs import flush_logs, line_writer, log_job
from .outbox import Outbox
from .progress import ProgressCourier
from .runner import Runner
from .teller import Teller
from .wire import (
    EpochGate,
    RedisHealth,
    WorkerLog,
    worker_log,
)

BLOCK_TIMEOUT_S = 1
AUTO_PREFETCH = 8  # jobs per pop while they are short: one round trip and wake-up per batch
SHORT_JOB_S = 0.002
JOBS_LOGGER = "fleet.worker.jobs"  # one line per finished job (fleet worker --quiet: off)


class Executor:
    """The pop-run-ack loop, with no process or signal handling of its own (so tests can run
    it in-process on fakeredis)."""

    def __init__(self, client: RedisClient, keys: Keys, queues: tuple[str, ...], runner: Runner,
                 prefetch: int = 1, channel: Any = None, log: WorkerLog | None = None,
                 hold_limit_s: float = 0.5, slot: int = 0, taken_ttl_s: float = TAKEN_TTL_S
                 ) -> None:
        self.wire = Pipe(client)
        self.acks_key = keys.acks
        self.wake_key = keys.wake
        self.queue_keys = [keys.ready(queue) for queue in queues]
        self.runner = runner
        self.prefetch = prefetch  # 0: adaptive (the module docstring)
        self.single_pops = False  # the ACL refuses the taken lists: no batches
        self.hold_limit_s = hold_limit_s
        self.short_run = 0  # jobs in a row that took under SHORT_JOB_S
        self.popped_s = 0.0  # when the buffer's messages were popped (monotonic)
        self.teller = Teller(channel, self.stop)
        if channel is not None:
            runner.progress = ProgressCourier(self.teller.tell)
        self.log = log or worker_log(__name__, runner.identity.worker_id)
        self.jobs_log = worker_log(JOBS_LOGGER, self.log.who)
        # Read once: --quiet and --log-level are set before the executors start.
        self.log_jobs = self.jobs_log.isEnabledFor(logging.INFO)
        self._job_line = line_writer(self.jobs_log.logger) if self.log_jobs else None
        self.health = RedisHealth(self.log)
        # Prefetched messages, each with its raw bytes when it is in the taken list (None
        # for a message popped alone, which starts at once).
        self.buffer: deque[tuple[dict[str, Any], bytes | None]] = deque()
        self.taken_key = keys.taken(runner.identity.worker_id, slot)
        self.taken_ttl_ms = int(taken_ttl_s * 1000)
        self.stale_taken: list[bytes] = []  # handed back or started: LREM at the next pop
        self.epochs = EpochGate()
        self.outbox = Outbox(self.wire, self.acks_key, self.health, self.teller.confirmed)
        self.drained = False  # the last pop found the queues empty: wait with the acks
        self.no_lengths = False  # the ACL refuses LLEN: no drained mode
        self.handled = 0
        self.stopping = False

    def stop(self, *_: Any) -> None:
        """Finish the current job, then hand back what is prefetched and return (signal-safe)."""
        self.stopping = True

    def run(self, max_jobs: int | None = None) -> int:
        """Loop until stopped (or ``max_jobs`` messages were handled). Returns that count."""
        try:
            while not self.stopping and (max_jobs is None or self.handled < max_jobs):
                self.wire.check_owner()  # a job's forked child must not run the next job
                if self.buffer and time.monotonic() - self.popped_s > self.hold_limit_s:
                    self.teller.tell_done()
                    hand_back_held(self)
                elif self.buffer:
                    self._handle(*self.buffer.popleft())
                else:
                    self._refill()
            hand_back(self)
        finally:
            self.wire.close()
        return self.handled

    def _refill(self) -> None:
        try:
            popped, taken = self._fetch()
        except TransportError as exc:
            if isinstance(exc, BatchRefused) and exc.denied:  # an ACL without taken lists
                self.single_pops = True
                self.log.warning("Redis refused a batch pop (%s): popping one job at a time; "
                                 "re-run `fleet acl --role worker` for this version", exc)
                return
            self.teller.tell_done()  # with its ack: killed in the backoff, the supervisor pushes it
            time.sleep(self.health.failed(exc))
            return
        if not self.outbox.unpushed:  # else Redis refused the acks: back off still
            self.health.ok()
        self.popped_s = time.monotonic()
        for raw in popped:
            message = self._admitted(raw)
            if message is not None:
                self.buffer.append((message, raw if taken else None))
            elif taken:  # not to be run: out of the taken list at the next pop
                self.stale_taken.append(raw)

    def _admitted(self, raw: bytes) -> dict[str, Any] | None:
        """The message to run, or None: unsealed, malformed or of an older epoch (handed
        back ``rel``)."""
        body = self.runner.opened(raw)  # the seal first: nothing unsealed is parsed
        if body is None:
            return None
        message = decode_dispatch(body)
        if message is None:
            self.log.warning("dropped a message that is not JSON or has no id/n: %.200r", raw)
        elif not self.epochs.admits(message):
            self.outbox.add(self.epochs.hand_back(message, self.runner.identity))
            self.log.warning("handed back %.200r attempt %s unrun: dispatched at epoch %s, "
                             "older than %d (%d so far)", message["id"], message["n"],
                             message.get("ep"), self.epochs.highest, self.epochs.refused)
        else:
            return message
        return None

    def _fetch(self) -> tuple[list[bytes], bool]:
        """Push pending acks and pop up to ``prefetch`` messages from the first non-empty queue;
        wait in BLPOP when every queue is empty. Returns them, and whether they were moved
        into the taken list (a batch).

        Redis may refuse the RPUSH (``OOM`` under ``noeviction``) and still run the LPOP
        written with it: whatever that popped is returned and run, and the acks are kept and
        pushed alone, with backoff, before anything more is popped. (A batch's ``LMOVE``
        commands are refused under OOM: nothing is popped then.)

        Raises:
            TransportError: the connection failed, or Redis refused a command and nothing
                was popped.
        """
        self.outbox.settle()
        if self.outbox.unpushed and self.health.failing:
            self.outbox.push_alone()
        commands = self.outbox.push_command()
        commands += [("LREM", self.taken_key, -1, raw) for raw in self.stale_taken]
        if self.drained and not self.stopping:
            return self._wait_for_one(commands), False
        count = self._pop_count()
        pop = self._pop_commands(self.queue_keys[0], count)
        replies = self.wire.call(*commands, *pop)
        self.stale_taken = []
        refusal = self.outbox.pushed(replies[0]) if self.outbox.unpushed else None
        popped = popped_batch(replies[-len(pop):], count)
        for key in self.queue_keys[1:]:
            if popped:
                break
            popped = popped_batch(self.wire.call(*self._pop_commands(key, count)), count)
        if refusal is not None:
            if not popped:
                raise refusal  # nothing to run: back off, then push the acks alone
            self.health.failed(refusal)
        self.drained = not popped  # the queues ran dry
        if popped or self.stopping:
            return popped or [], count > 1
        return self._wait_for_one([]), False

    def _wait_for_one(self, commands: list[Command]) -> list[bytes]:
        """After ``commands`` (the acks first, if any), wake the controller if a job has just
        finished (else its ack may wait out the controller's idle wait), then wait in
        ``BLPOP``: one write. The ``LLEN`` of each queue, read just before the ``BLPOP`` takes
        a message, says whether more wait behind it; only then does the next fetch pop again.

        Raises:
            TransportError: as ``_fetch``.
        """
        pushing = bool(commands) and commands[0][0] == "RPUSH"
        if self.teller.done is not None:
            commands.append(("RPUSH", self.wake_key, b"1"))
        lengths = [] if self.no_lengths else [("LLEN", key) for key in self.queue_keys]
        self.wire.send(*commands, *lengths, ("BLPOP", *self.queue_keys, BLOCK_TIMEOUT_S))
        # Told only once the ack is on the socket: killed before, the supervisor still owes it.
        self.teller.tell_done()
        flush_logs()  # the job lines of the busy spell, before a wait of up to a second
        replies = self.wire.settle()
        self.stale_taken = []
        refusal = self.outbox.pushed(replies[0]) if pushing else None
        found = popped_one(replies[-1])
        self.drained = self._still_drained(replies[-1 - len(lengths):-1])
        if refusal is not None:
            if not found:
                raise refusal
            self.health.failed(refusal)
        return [found[1]] if found else []

    def _still_drained(self, lengths: list[Any]) -> bool:
        """Whether the queues' ``LLEN`` replies count at most the message the ``BLPOP`` took.
        A refused one (an older ACL without ``llen``) ends the drained mode for good."""
        refusal = next(filter(refused, lengths), None)
        if refusal is not None:
            self.no_lengths = True
            self.log.warning("Redis refused LLEN (%s): waiting without the queue lengths; "
                             "re-run `fleet acl --role worker` for this version", refusal)
            return False
        return bool(lengths) and sum(n for n in lengths if isinstance(n, int)) <= 1

    def _pop_commands(self, key: str, count: int) -> list[Command]:
        """One message with ``LPOP`` (it starts at once); a batch moved into the taken list."""
        if count == 1:
            return [("LPOP", key, 1)]
        return [*(("LMOVE", key, self.taken_key, "LEFT", "RIGHT") for _ in range(count)),
                ("PEXPIRE", self.taken_key, self.taken_ttl_ms)]

    def _pop_count(self) -> int:
        if self.single_pops:
            return 1
        if self.prefetch:
            return self.prefetch
        return AUTO_PREFETCH if self.short_run >= AUTO_PREFETCH else 1

    def _handle(self, message: dict[str, Any], taken: bytes | None) -> None:
        job_id, attempt = message["id"], message["n"]
        started_ms = now_ms()
        held = [(queued["id"], queued["n"]) for queued, _ in self.buffer]
        # The held acks and a batch message's LREM (from the tail, where the batch is) go out
        # before the supervisor hears that the job before finished and this one starts.
        lrem = () if taken is None else (("LREM", self.taken_key, -1, taken),)
        if not self.outbox.send_early(*lrem) and taken is not None:
            self.stale_taken.append(taken)  # its job starts anyway: out of the list next pop
        self.teller.starting(job_id, attempt, started_ms, self.runner.timeout_of(message), held)
        started_s = time.perf_counter()
        ack, ok = self.runner.run(message, started_ms)
        self.wire.check_owner()  # a fork the job made, returning: not even a log line
        took_s = time.perf_counter() - started_s
        self.short_run = self.short_run + 1 if took_s < SHORT_JOB_S else 0
        if self.log_jobs:
            log_job(self.jobs_log, self._job_line, message, ok, took_s, self.runner.last_error)
        self.outbox.add(ack)
        self.handled += 1
        self.teller.finished(job_id, attempt, ok, ack)
