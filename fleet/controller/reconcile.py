"""Reconcile: acks become ACK / FAIL / RELEASE events; leases run out into EXPIRE events.

Acks are fenced by ``(id, attempt)`` in the job table itself: an ack that does not fit the
job's state records nothing and is counted as stale. Lease extensions from heartbeats are kept
here, in memory only (see docs/protocol.md §5).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import orjson

from ..config import Settings
from ..journal import Journal
from ..state import JobRecord
from ..state import events as ev
from .retry import retry_at_ms

log = logging.getLogger("fleet.controller")

SILENT_BEATS = 3
_OUTCOMES = ("ok", "fail", "rel", "cancelled")


class Reconciler:
    """Applies acks, heartbeats and lease expiry to the journal."""

    def __init__(self, journal: Journal, settings: Settings, rng: random.Random) -> None:
        self.journal = journal
        self.settings = settings
        self.rng = rng
        self.lease_ms = int(settings.lease_s * 1000)
        self.extended: dict[str, tuple[int, int]] = {}
        self.running_on: dict[str, tuple[int, str]] = {}
        self.stale_acks = 0
        self.malformed_acks = 0
        self.malformed_beats = 0
        self.heartbeat_ms = int(settings.heartbeat_s * 1000)
        self.report_grace_ms = 2 * self.heartbeat_ms
        self._graced: set[tuple[str, int]] = set()
        self._beat_seen: dict[Any, tuple[Any, int]] = {}

    # -- acks ------------------------------------------------------------------------------

    def handle_acks(self, raw_acks: list[bytes], now_ms: int) -> None:
        """Record the event each ack stands for; count stale and malformed ones."""
        for raw in raw_acks:
            ack = _parse_ack(raw)
            if ack is None:
                self.malformed_acks += 1
                continue
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
            retry_at = retry_at_ms(now_ms, job.failures, self.settings.backoff_base_s,
                                   self.settings.backoff_max_s, self.rng)
            error = str(ack.get("e") or "unknown error")[:2000]
            return self.journal.record(ev.failed(job.id, attempt, error, ack, retry_at,
                                                 bool(ack.get("fin")), now_ms))
        elif outcome == "rel":
            return self.journal.record(ev.released(job.id, attempt, str(ack.get("e")),
                                                   now_ms))
        return False

    # -- leases ----------------------------------------------------------------------------

    def parse_beats(self, raw_beats: list[bytes]) -> list[dict[str, Any]]:
        """Usable heartbeats; one that is not an object, or has a field of the wrong type, is
        counted and logged (its good fields are still used)."""
        beats = []
        for raw in raw_beats:
            beat, clean = parse_heartbeat(raw)
            if not clean:
                self.malformed_beats += 1
                log.warning("malformed worker heartbeat%s: %.200r",
                            "" if beat is None else " (bad fields ignored)", raw)
            if beat is not None:
                beats.append(beat)
        return beats

    def live_beats(self, beats: list[dict[str, Any]], now_ms: int) -> list[dict[str, Any]]:
        """The heartbeats whose worker is still beating.

        A heartbeat key outlives its worker by its expiry (10 s); a frozen or cut-off worker
        must not keep extending its jobs' leases meanwhile. A beat whose ``ts`` has not moved
        for ``SILENT_BEATS`` heartbeat periods of the controller's clock is ignored (comparing
        the worker's own timestamps with each other, so clock skew between hosts is harmless).
        """
        silent_ms = SILENT_BEATS * self.heartbeat_ms
        live, seen = [], {}
        for beat in beats:
            worker_id, ts = beat.get("id"), beat.get("ts")
            last_ts, changed_ms = self._beat_seen.get(worker_id, (None, now_ms))
            if ts != last_ts:
                changed_ms = now_ms
            seen[worker_id] = (ts, changed_ms)
            if now_ms - changed_ms <= silent_ms:
                live.append(beat)
        self._beat_seen = seen
        return live

    def on_heartbeats(self, beats: list[dict[str, Any]], now_ms: int) -> set[str]:
        """Extend the lease of every job a live worker reports; returns the reported ids."""
        reported: set[str] = set()
        running: dict[str, tuple[int, str]] = {}
        deadline = now_ms + self.lease_ms
        for beat in self.live_beats(beats, now_ms):
            for entry in beat.get("jobs") or []:
                if isinstance(entry, list) and len(entry) >= 2 and isinstance(entry[0], str):
                    job_id, attempt = entry[0], entry[1]
                    self.extended[job_id] = (attempt, deadline)
                    running[job_id] = (attempt, str(beat.get("id")))
                    reported.add(job_id)
        self.running_on = running
        in_flight = self.journal.table.in_flight
        self.extended = {k: v for k, v in self.extended.items() if k in in_flight}
        self._graced = {graced for graced in self._graced if graced[0] in in_flight}
        return reported

    def grant_grace(self, now_ms: int) -> None:
        """Give every in-flight job a fresh lease (after a restart nobody extended them)."""
        for job in self.journal.table.in_flight.values():
            self.extended[job.id] = (job.attempt, now_ms + self.lease_ms)

    def lapsed(self, now_ms: int) -> list[JobRecord]:
        """In-flight jobs whose lease (with any heartbeat extension) ran out by ``now_ms``."""
        found = []
        for job in self.journal.table.in_flight.values():
            deadline = job.lease_deadline_ms
            extension = self.extended.get(job.id)
            if extension is not None and extension[0] == job.attempt:
                deadline = max(deadline, extension[1])
            if now_ms > deadline:
                found.append(job)
        return found

    def expire(self, lapsed: list[JobRecord], still_queued: list[bool], now_ms: int) -> None:
        """Record the end of each lapsed lease.

        ``still_queued[i]`` says the job's message was still in its ready list (and has just
        been removed): no worker ever took it, so it goes back to pending without counting
        as a failed attempt. Otherwise a worker took it and went silent: EXPIRE, a failure.
        """
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
                self._graced.add((job.id, job.attempt))
                self.extended[job.id] = (job.attempt, now_ms + self.report_grace_ms)
                continue
            retry_at = retry_at_ms(now_ms, job.failures, self.settings.backoff_base_s,
                                   self.settings.backoff_max_s, self.rng)
            if self.journal.record(ev.expired(job.id, job.attempt, retry_at, now_ms)):
                log.info("lease of %s attempt %d expired", job.id, job.attempt)


def _parse_ack(raw: bytes) -> dict[str, Any] | None:
    try:
        ack = orjson.loads(raw)
    except orjson.JSONDecodeError:
        log.warning("dropped an ack that is not JSON (%d bytes)", len(raw))
        return None
    # Exact type checks (orjson makes no subclasses; ``type(x) is int`` also refuses bools),
    # and each field looked up once: this runs for every ack.
    if (type(ack) is not dict or type(ack.get("id")) is not str
            or type(ack.get("n")) is not int or ack.get("o") not in _OUTCOMES):
        log.warning("dropped a malformed ack: %.200s", raw)
        return None
    if type(ack.get("st")) is not int:
        ack["st"] = None
    if type(ack.get("ft")) is not int:
        ack["ft"] = None
    for name in ("w", "h"):
        value = ack.get(name)
        if value is not None and type(value) is not str:
            ack[name] = str(value)
    return ack


_BEAT_INTS = ("pid", "started_ms", "ts", "executors", "busy", "done", "failed")


def parse_heartbeat(raw: bytes) -> tuple[dict[str, Any] | None, bool]:
    """A worker heartbeat (protocol §5) with every field of its type, and whether it came so.

    Not JSON, or not an object: ``(None, False)``. A field of the wrong type is set to None (a
    ``jobs`` entry that is not ``[id, attempt, ...]`` is left out), so that nothing downstream
    trips over what a broken or hostile writer put in Redis.
    """
    try:
        beat = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, False
    if not isinstance(beat, dict):
        return None, False
    clean = True
    for name in _BEAT_INTS:
        if beat.get(name) is not None and not _is_int(beat[name]):
            beat[name], clean = None, False
    for name in ("id", "host"):
        if beat.get(name) is not None and not isinstance(beat[name], str):
            beat[name], clean = None, False
    queues = beat.get("queues")
    if queues is not None and not (isinstance(queues, list)
                                   and all(isinstance(q, str) for q in queues)):
        beat["queues"], clean = None, False
    jobs = beat.get("jobs")
    good = [entry for entry in jobs if _is_job_entry(entry)] if isinstance(jobs, list) else []
    clean = clean and (jobs is None or (isinstance(jobs, list) and len(good) == len(jobs)))
    beat["jobs"] = good
    return beat, clean


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_job_entry(entry: Any) -> bool:
    return (isinstance(entry, list) and len(entry) >= 2 and isinstance(entry[0], str)
            and _is_int(entry[1]))
