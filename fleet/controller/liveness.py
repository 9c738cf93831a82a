"""Worker liveness: which workers are beating, what they serve, and which attempt each runs.

Read from the workers' heartbeat keys (protocol §5) once a heartbeat period. A heartbeat key
outlives its worker by its expiry, so a beat counts as live only while its ``ts`` still moves
(``SILENT_BEATS``). What the live beats report feeds the lease extensions (reconcile.py), the
healer's ``Witness`` (heal.py), the dispatch window and the ``running_on`` of a job.

The latest progress of each running attempt comes with its worker's beat and is kept here, in
memory only: never logged, rebuilt from every read (an attempt that ended drops out of its
worker's beat, and so out of ``progress``), and shown only while the job is in flight at that
attempt, as reported by the worker credited with running it (docs/protocol.md §5).
"""

from __future__ import annotations

import logging
from typing import Any

from ..protocol.heartbeat import decode_heartbeat
from .reconcile import SILENT_BEATS

log = logging.getLogger("fleet.controller")


class Liveness:
    """The fleet of workers as their last heartbeats describe it."""

    def __init__(self, heartbeat_ms: int) -> None:
        self.heartbeat_ms = heartbeat_ms
        self.beats: list[dict[str, Any]] = []  # every usable heartbeat of the last read
        self.served: set[str] = set()  # queues the workers consume
        self.executors = 0
        self.running_on: dict[str, tuple[int, str]] = {}  # job id -> (attempt, worker id)
        self.progress: dict[str, tuple[int, dict[str, Any]]] = {}  # job id -> (attempt, it)
        self.malformed_beats = 0
        self._beat_seen: dict[Any, tuple[Any, int]] = {}  # worker id -> (ts, when it moved)

    def parse_beats(self, raw_beats: list[bytes]) -> list[dict[str, Any]]:
        """Usable heartbeats; one that is not an object, or has a field of the wrong type, is
        counted and logged (its good fields are still used)."""
        beats = []
        for raw in raw_beats:
            try:
                beat, clean = decode_heartbeat(raw)
            except Exception:  # noqa: BLE001 - no content of a message may stop the controller
                beat, clean = None, False
            if not clean:
                self.malformed_beats += 1
                log.warning("malformed worker heartbeat%s: %.200r",
                            "" if beat is None else " (bad fields ignored)", raw)
            if beat is not None:
                beats.append(beat)
        return beats

    def read(self, beats: list[dict[str, Any]]) -> None:
        """Take in the workers' last heartbeats: the queues they serve, their executors."""
        self.beats = beats
        self.served = {q for beat in beats for q in beat.get("queues") or ()
                       if isinstance(q, str)}
        self.executors = sum(b.get("executors") or 0 for b in beats)

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

    def on_heartbeats(self, beats: list[dict[str, Any]], now_ms: int
                      ) -> list[dict[str, Any]]:
        """Note which attempt each live worker runs (``running_on``); returns the live beats."""
        running: dict[str, tuple[int, str]] = {}
        reported: dict[str, tuple[int, str, dict[str, Any]]] = {}
        live = self.live_beats(beats, now_ms)
        for beat in live:
            worker_id = str(beat.get("id"))
            for entry in beat.get("jobs") or []:
                if isinstance(entry, list) and len(entry) >= 2 and isinstance(entry[0], str):
                    running[entry[0]] = (entry[1], worker_id)
                    if len(entry) > 3 and isinstance(entry[3], dict):
                        reported[entry[0]] = (entry[1], worker_id, entry[3])
        self.running_on = running
        # Only the worker credited with an attempt speaks for its progress.
        self.progress = {job_id: (attempt, progress)
                         for job_id, (attempt, worker_id, progress) in reported.items()
                         if running.get(job_id) == (attempt, worker_id)}
        return live

    def progress_of(self, job_id: str, attempt: int, now_ms: int) -> dict[str, Any] | None:
        """``{"fraction", "message", "age_s"}``: the latest progress of ``(job_id, attempt)``
        (the job's current attempt, in flight), or None if it reported none.

        ``age_s`` is measured against this controller's clock from the worker's; a skew
        between the two shifts it (never below 0)."""
        kept = self.progress.get(job_id)
        if kept is None or kept[0] != attempt:
            return None
        progress = kept[1]
        return {"fraction": progress["f"], "message": progress["m"],
                "age_s": round(max(0, now_ms - progress["ts"]) / 1000, 3)}

    def may_run(self, job_id: str) -> list[str]:
        """The workers to tell to stop ``job_id``: the one a heartbeat reports running it, or
        every worker that beats if none has reported it yet (it may have just been popped)."""
        running = self.running_on.get(job_id)
        if running is not None:
            return [running[1]]
        return [str(beat.get("id")) for beat in self.beats if beat.get("id")]
