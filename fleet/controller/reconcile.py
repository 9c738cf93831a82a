"""Reconcile: acks become ACK / FAIL / RELEASE events; leases run out into EXPIRE events.

Acks are fenced by ``(id, attempt)`` in the job table itself: an ack that does not fit the
job's state records nothing and is counted as stale. Lease extensions from heartbeats are kept
here, in memory only (see docs/protocol.md §5); which workers still beat, and what each runs,
is liveness.py's.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from ..job import MAX_JSON_DEPTH, MAX_PAYLOAD_BYTES, MAX_RETRIES_LIMIT, json_problem
from ..keys import Keys
from ..protocol.ack import attempt_in_head, decode_ack
from ..state import JobRecord
from ..state import events as ev
from ..transport import ControllerWire, Item, Oversized
from .dispatch import Dispatcher
from .heal import Witness
from .journal import Journal
from .options import ReconcileOptions
from .retry import retry_at_ms

if TYPE_CHECKING:
    from .liveness import Liveness

log = logging.getLogger("fleet.controller")

SILENT_BEATS = 3
# How long a worker may wait before it retries Redis after an outage (the ceiling of the
# worker's ``RedisHealth`` backoff): its first heartbeat after Redis recovers can come this late.
WORKER_RETRY_MAX_MS = 2000
LOST_REASON = "lease ran out with the message gone from Redis and no worker holding it"
UNSTARTED_REASON = "prefetched by a worker that stopped before starting it"
# "Found in a taken list" means "never started" only if the LREM its executor sends before the
# start reached Redis. Should it not (a failed write, a failover dropping it), a job that
# takes its worker down would go back uncharged each time; so after this many uncharged
# releases in a row its next lapse is charged. A job prefetched behind a poison job sees at
# most that job's attempts (``MAX_RETRIES_LIMIT`` + 1) such lapses: one more than that.
MAX_UNSTARTED_IN_A_ROW = MAX_RETRIES_LIMIT + 2
# The lookups (LPOS of a job's message in a list) one step's lapses may make in stopped
# workers' taken lists, however many workers died or what their heartbeats claimed.
MAX_TAKEN_LOOKUPS = 1024


class Reconciler:
    """Applies acks, heartbeats and lease expiry to the journal."""

    def __init__(self, journal: Journal, options: ReconcileOptions, rng: random.Random,
                 liveness: Liveness) -> None:
        self.journal = journal
        self.liveness = liveness
        self.options = options
        self.rng = rng
        self.lease_ms = int(options.lease_s * 1000)
        self.extended: dict[str, tuple[int, int]] = {}
        self.stale_acks = 0
        self.malformed_acks = 0
        self.heartbeat_ms = int(options.heartbeat_s * 1000)
        self.report_grace_ms = 2 * self.heartbeat_ms
        self._graced: dict[tuple[str, int], int] = {}  # -> when its lease first lapsed
        self.trouble_ms: int | None = None  # when the controller last got a Redis error
        self.calm_ms: int | None = None  # its first clean step after that error
        self.forgot_ms: int | None = None  # when Redis was last found to have lost its data
        # After Redis recovers, a live worker is heard again within its retry backoff, one beat
        # and one of the controller's reads, and is taken as live at once.
        self.quiet_ms = WORKER_RETRY_MAX_MS + (SILENT_BEATS + 2) * self.heartbeat_ms
        self._rebased: set[tuple[str, int]] = set()
        self.witness = Witness(self.lease_ms, self.heartbeat_ms)
        self.lost_messages = 0
        # No lease lapses until ``_quiet_until_ms`` (a scan from ``_scanned_ms`` found none
        # earlier): the steps in between skip the scan. 0: scan at the next step.
        self._quiet_until_ms = 0
        self._scanned_ms = 0

    # -- acks ------------------------------------------------------------------------------

    def handle_acks(self, raw_acks: Sequence[Item], now_ms: int) -> None:
        """Record the event each ack stands for; count stale and malformed ones.

        No ack can stop the controller: one that trips anything while it is handled is counted
        as malformed and logged, and the next one is handled.
        """
        for raw in raw_acks:
            try:
                self._handle_ack(raw, now_ms)
            except Exception:  # noqa: BLE001 - no content of a message may stop the controller
                self.malformed_acks += 1
                log.exception("dropped an ack that could not be handled: %.200r", raw)

    def _handle_ack(self, raw: Item, now_ms: int) -> None:
        problem: str | None
        if isinstance(raw, Oversized) or len(raw) > self.options.max_message_bytes:
            ack, problem = _oversized_ack(raw, self.options.max_message_bytes)
        else:
            ack, why = decode_ack(raw)
            if ack is None and why == "not JSON":
                log.warning("dropped an ack that is not JSON (%d bytes)", len(raw))
            elif ack is None:
                log.warning("dropped a malformed ack: %.200r", raw)
            problem = _result_problem(raw, ack) if ack is not None else None
        if ack is None:
            self.malformed_acks += 1
            return
        if problem is not None:
            # A poison ack: what it carries cannot be stored, but it does say how the attempt
            # ended, so the job still ends exactly once (an ``ok`` becomes a final failure: the
            # same function would return the same result again).
            self.malformed_acks += 1
            log.warning("ack of %s attempt %d refused: %s", ack["id"], ack["n"], problem)
            ack = _poisoned(ack, problem)
        if not self._apply_ack(ack, now_ms):
            self.stale_acks += 1

    def _apply_ack(self, ack: dict[str, Any], now_ms: int) -> bool:
        job = self.journal.table.get(ack["id"])
        if job is None or ack.get("eq", job.enqueued_ms) != job.enqueued_ms:
            return False  # unknown, or (its enqueue time tells) an earlier job of this id
        outcome, attempt = ack["o"], ack["n"]
        if outcome == "ok":
            return self.journal.record(ev.acked(job.id, attempt, ack.get("r"), ack, now_ms))
        elif outcome == "fail":
            retry_at = retry_at_ms(now_ms, job.failures, self.options.backoff_base_s,
                                   self.options.backoff_max_s, self.rng)
            error = _text(ack.get("e")) or "unknown error"
            tb = ack.get("tb")  # the attempt's traceback (protocol §4), capped like the worker's
            return self.journal.record(ev.failed(job.id, attempt, error, ack, retry_at,
                                                 bool(ack.get("fin")), now_ms,
                                                 tb[:ev.TRACEBACK_MAX_CHARS] if type(tb) is str
                                                 else None))
        elif outcome == "rel":
            return self.journal.record(ev.released(job.id, attempt, _text(ack.get("e")),
                                                   now_ms))
        return False

    # -- leases ----------------------------------------------------------------------------

    def on_heartbeats(self, beats: list[dict[str, Any]], now_ms: int) -> set[str]:
        """Extend the lease of every job a live worker reports (``Liveness`` tells which
        workers live, and what they run); returns the reported ids."""
        live = self.liveness.on_heartbeats(beats, now_ms)
        self._quiet_until_ms = 0  # once a beat: cheap, and no case of it to reason about
        deadline = now_ms + self.lease_ms
        reported = set(self.liveness.running_on)
        for job_id, (attempt, _) in self.liveness.running_on.items():
            self.extended[job_id] = (attempt, deadline)
        in_flight = self.journal.table.in_flight
        self.extended = {k: v for k, v in self.extended.items() if k in in_flight}
        self._graced = {job: at for job, at in self._graced.items() if job[0] in in_flight}
        self._rebased = {job for job in self._rebased if job[0] in in_flight}
        self.witness.observe(live, now_ms, in_flight)
        return reported

    def grant_grace(self, now_ms: int) -> None:
        """Give every in-flight job a fresh lease in place of its recorded one: after a restart
        nobody extended them, and the recorded deadline may lie on the far side of a step of
        the wall clock (an hour ahead, it would keep a dead worker's job for the hour)."""
        for job in self.journal.table.in_flight.values():
            self.extended[job.id] = (job.attempt, now_ms + self.lease_ms)
            self._rebased.add((job.id, job.attempt))
        self._quiet_until_ms = 0

    def lapsed(self, now_ms: int) -> list[JobRecord]:
        """In-flight jobs whose lease (with any heartbeat extension) ran out by ``now_ms``.

        A scan also finds the earliest deadline, and until then the next steps skip it: a
        lease taken or extended after the scan ends a whole lease after it at the earliest
        (one clock, monotonic within the run); whatever can bring a deadline nearer (a grace
        in ``expire``, ``grant_grace``, a heartbeat that names another attempt) asks for a scan
        at the next step.
        """
        if self._scanned_ms <= now_ms <= self._quiet_until_ms:
            return []
        found = []
        earliest = now_ms + self.lease_ms
        for job in self.journal.table.in_flight.values():
            # In flight, so leased: never None. (No cast: this runs per job per step.)
            deadline: int = job.lease_deadline_ms  # type: ignore[assignment]
            extension = self.extended.get(job.id)
            if extension is not None and extension[0] == job.attempt:
                deadline = (extension[1] if (job.id, job.attempt) in self._rebased
                            else max(deadline, extension[1]))
            if now_ms > deadline:
                found.append(job)
            elif deadline < earliest:
                earliest = deadline
        # Lapsed ones are scanned again until ``expire`` has dealt with them.
        self._scanned_ms, self._quiet_until_ms = now_ms, 0 if found else earliest
        return found

    def expire(self, lapsed: list[JobRecord], still_queued: list[bool], now_ms: int,
               unstarted: Callable[[list[JobRecord]], set[str]] | None = None) -> None:
        """Record the end of each lapsed lease.

        ``still_queued[i]`` says the job's message was still in its ready list (and has just
        been removed): no worker ever took it, so it goes back to pending without counting
        as a failed attempt. Gone from the list, it gets two heartbeats' grace (a worker may
        have popped it just now). Then it is a failed attempt (EXPIRE) only if a worker may
        have held it and died (``Witness.may_hold``); otherwise Redis lost the message (a
        list deleted, evicted, rolled back) or the ack, and the job goes back to pending
        without a failure, to be dispatched again as a new attempt. ``unstarted`` takes the
        jobs about to be charged and returns the ids of those found in a stopped worker's
        taken lists (prefetched, never started): they go back to pending uncharged too.
        """
        lost = 0
        charged: list[JobRecord] = []
        self._quiet_until_ms = 0  # the graces below end sooner than a lease
        for job, queued in zip(lapsed, still_queued, strict=True):
            if queued:
                self.journal.record(ev.released(
                    job.id, job.attempt, "lease ran out before any worker took the message",
                    now_ms))
                continue
            if (job.id, job.attempt) not in self._graced:
                # Gone from the list, but a worker may have popped it just now and not yet
                # named it in a heartbeat: give it two heartbeats before calling it lost, or a
                # job that waited its lease out in the list would run twice.
                self._graced[job.id, job.attempt] = now_ms
                self.extended[job.id] = (job.attempt, now_ms + self.report_grace_ms)
                continue
            held = self.witness.may_hold(job)
            if held and self._silence_unproven(now_ms, self._graced[job.id, job.attempt]):
                self.extended[job.id] = (job.attempt, now_ms + self.heartbeat_ms)
                continue
            if not held:
                lost += self.journal.record(ev.released(job.id, job.attempt, LOST_REASON,
                                                        now_ms))
                continue
            charged.append(job)
        self._charge(charged, unstarted(charged) if unstarted and charged else set(), now_ms)
        if lost:
            self.lost_messages += lost
            log.warning("%d jobs lost their message or ack in Redis (no worker held them): "
                        "dispatching them again, not counted as failures", lost)

    def _charge(self, jobs: list[JobRecord], unstarted: set[str], now_ms: int) -> None:
        """A failed attempt (EXPIRE) for each of ``jobs``, but those in ``unstarted``."""
        for job in jobs:
            if job.id in unstarted:
                if _unstarted_in_a_row(job) < MAX_UNSTARTED_IN_A_ROW:
                    self.journal.record(ev.released(job.id, job.attempt, UNSTARTED_REASON,
                                                    now_ms))
                    continue
                unstarted.discard(job.id)
                log.warning("%s was found unstarted after %d lapses in a row: charging this "
                            "one", job.id, MAX_UNSTARTED_IN_A_ROW)
            retry_at = retry_at_ms(now_ms, job.failures, self.options.backoff_base_s,
                                   self.options.backoff_max_s, self.rng)
            if self.journal.record(ev.expired(job.id, job.attempt, retry_at, now_ms)):
                log.info("lease of %s attempt %d expired", job.id, job.attempt)
        if unstarted:
            log.warning("%d jobs were prefetched by workers that stopped before starting "
                        "them: dispatching them again, not counted as failures", len(unstarted))

    def redis_trouble(self, now_ms: int) -> None:
        """The controller got a Redis error: the workers' heartbeats may be refused too."""
        self.trouble_ms = now_ms
        self.calm_ms = None

    def redis_forgot(self, now_ms: int) -> None:
        """Redis lost its data (restarted empty, rolled back): the heartbeat keys went with
        it, and a live worker is heard again only at its next beat, after its reconnect
        backoff. Until then its silence proves nothing, as after a Redis error."""
        self.forgot_ms = now_ms

    def redis_ok(self, now_ms: int) -> None:
        """A step went through after Redis errors: Redis takes writes again (from ``now_ms``)."""
        if self.trouble_ms is not None and self.calm_ms is None:
            self.calm_ms = now_ms

    def _silence_unproven(self, now_ms: int, lapsed_ms: int) -> bool:
        """A worker's silence proves nothing while Redis fails, nor until a live worker has
        had time to be heard once Redis took writes again (a Redis refusing writes refuses
        heartbeats as well, and the worker's backoff delays its first one after). That wait
        is measured from the recovery, not from the last error (the controller's own backoff
        may put seconds between the two). A Redis still failing one lease after the lapse no
        longer excuses the silence, so a flapping Redis cannot hold a dead worker's jobs for
        ever: the wait is bounded by a lease plus ``quiet_ms``."""
        if self.forgot_ms is not None and now_ms - self.forgot_ms < self.quiet_ms:
            return True  # however long ago the lapse: nobody could beat into the lost data
        if self.trouble_ms is None:
            return False
        if self.calm_ms is None:
            return now_ms - lapsed_ms < self.lease_ms
        return (now_ms - self.calm_ms < self.quiet_ms
                and self.calm_ms - lapsed_ms < self.lease_ms)


def expire_lapsed(reconciler: Reconciler, wire: ControllerWire, keys: Keys,
                  dispatcher: Dispatcher, now_ms: int) -> int:
    """End the leases lapsed by ``now_ms``; returns how many. Their messages are first taken
    out of Redis if still there, so a job never sits twice in a ready list (a crash in between
    is healed like any lost message)."""
    lapsed = reconciler.lapsed(now_ms)
    if lapsed:
        # In flight, so dispatched: dispatched_ms is set.
        removed = wire.remove([(keys.ready(job.queue), _message(dispatcher, job))
                               for job in lapsed])
        reconciler.expire(lapsed, removed, now_ms, lambda jobs: _unstarted(
            jobs, reconciler.witness, wire, keys, dispatcher))
    return len(lapsed)


def _unstarted_in_a_row(job: JobRecord) -> int:
    """How many of the job's last attempts ended released as prefetched and unstarted."""
    count = 0
    for entry in reversed(job.history):
        if entry.get("o") != "released" or entry.get("e") != UNSTARTED_REASON:
            break
        count += 1
    return count


def _unstarted(jobs: list[JobRecord], witness: Witness, wire: ControllerWire, keys: Keys,
               dispatcher: Dispatcher) -> set[str]:
    """The ids of ``jobs`` whose message is in a stopped worker's taken list (``Witness``).

    Looked for (LPOS), neither read nor removed: whatever else a list holds never reaches the
    controller, and a copy left for an attempt that has ended matches nothing (the controller
    looks for current attempts only) and expires with its list."""
    searched = [(job.id, key, _message(dispatcher, job)) for job in jobs
                for key in witness.unstarted_keys(job, keys)]
    if len(searched) > MAX_TAKEN_LOOKUPS:
        log.warning("%d taken-list lookups due; doing %d", len(searched), MAX_TAKEN_LOOKUPS)
        searched = searched[:MAX_TAKEN_LOOKUPS]
    found = wire.present([(key, message) for _, key, message in searched]) if searched else []
    return {job_id for (job_id, _, _), hit in zip(searched, found, strict=True) if hit}


def _message(dispatcher: Dispatcher, job: JobRecord) -> bytes:
    """The message dispatched for ``job``'s current attempt (in flight: dispatched_ms set)."""
    return dispatcher.message(job, job.attempt, cast(int, job.dispatched_ms))



def _result_problem(raw: bytes, ack: dict[str, Any]) -> str | None:
    """Why an ``ok`` ack's result cannot be kept, or None. A small ack with few brackets is
    proved fine without encoding its result again (the common case, for every ack)."""
    if ack["o"] != "ok" or (len(raw) <= MAX_PAYLOAD_BYTES
                            and raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH):
        return None
    problem = json_problem(ack.get("r"), MAX_PAYLOAD_BYTES)
    return None if problem is None else f"the result is {problem}"




def _oversized_ack(raw: Item, limit: int) -> tuple[dict[str, Any] | None, str]:
    size, head = (raw.size_bytes, raw.head) if isinstance(raw, Oversized) else (
        len(raw), raw[:512])
    problem = f"the ack is {size} bytes; at most {limit} allowed"
    ack = attempt_in_head(head)
    if ack is None:
        log.warning("dropped an ack of %d bytes that names no attempt", size)
    return ack, problem


def _poisoned(ack: dict[str, Any], problem: str) -> dict[str, Any]:
    """The ack recorded instead of one whose content cannot be kept."""
    run = {name: ack.get(name) for name in ("id", "n", "w", "h", "st", "ft")}
    if ack["o"] == "ok":
        return {**run, "o": "fail", "e": f"ResultRefused: {problem}", "fin": True}
    if ack["o"] == "fail":
        return {**run, "o": "fail", "e": f"AckRefused: {problem}", "fin": bool(ack.get("fin"))}
    return {**run, "o": ack["o"], "e": f"AckRefused: {problem}"}


def _text(value: Any) -> str:
    """An error text from an ack, at most 2,000 characters whatever was sent."""
    if value is None:
        return ""
    if type(value) is str:
        return value[:2000]
    return f"(an error of type {type(value).__name__}, not text)"

