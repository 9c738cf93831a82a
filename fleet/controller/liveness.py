"""Worker liveness: which workers are beating, what they serve, and which attempt each runs.

Read from the workers' heartbeat keys (protocol §5) once a heartbeat period. A heartbeat key
outlives its worker by its expiry, so a beat counts as live only while its ``ts`` still moves
(``SILENT_BEATS``). What the live beats report feeds the lease extensions (reconcile.py), the
healer's ``Witness`` (heal.py), the dispatch window and the ``running_on`` of a job.
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
        live = self.live_beats(beats, now_ms)
        for beat in live:
            for entry in beat.get("jobs") or []:
                if isinstance(entry, list) and len(entry) >= 2 and isinstance(entry[0], str):
                    running[entry[0]] = (entry[1], str(beat.get("id")))
        self.running_on = running
        return live

    def may_run(self, job_id: str) -> list[str]:
        """The workers to tell to stop ``job_id``: the one a heartbeat reports running it, or
        every worker that beats if none has reported it yet (it may have just been popped)."""
        running = self.running_on.get(job_id)
        if running is not None:
            return [running[1]]
        return [str(beat.get("id")) for beat in self.beats if beat.get("id")]
