"""Enqueue: intake requests in, ENQUEUE events recorded, receipts out (after the commit)."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ..config import Settings
from ..errors import JobSpecError
from ..job import validate_spec
from ..journal import Journal
from ..state import events as ev

log = logging.getLogger("fleet.controller")

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"


class Intake:
    """Turns intake requests into events and receipts."""

    def __init__(self, journal: Journal, settings: Settings) -> None:
        self.journal = journal
        self.settings = settings
        self.malformed = 0
        self.counts = {ACCEPTED: 0, DUPLICATE: 0, REJECTED: 0}
        self.accepted_by_queue: dict[str, int] = {}

    def handle(self, requests: list[bytes], now_ms: int) -> list[tuple[str, bytes]]:
        """Record every acceptable job; returns ``(request id, receipt)`` pairs to send."""
        receipts = []
        for raw in requests:
            request = self._parse(raw)
            if request is None:
                continue
            request_id, jobs = request
            results = [self._accept(job, now_ms) for job in jobs] if isinstance(
                jobs, list) else [["", REJECTED, "request has no list of jobs"]]
            receipts.append((request_id, orjson.dumps({"req": request_id, "results": results})))
        return receipts

    def _parse(self, raw: bytes) -> tuple[str, Any] | None:
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError:
            request = None
        request_id = request.get("req") if isinstance(request, dict) else None
        if not isinstance(request_id, str) or not request_id or len(request_id) > 200:
            self.malformed += 1
            log.warning("dropped a malformed intake request (%d bytes)", len(raw))
            return None
        return request_id, request.get("jobs")

    def _accept(self, wire: Any, now_ms: int) -> list[str]:
        job_id = wire.get("id") if isinstance(wire, dict) else None
        try:
            spec = validate_spec(wire)
        except JobSpecError as exc:
            self.counts[REJECTED] += 1
            return [job_id if isinstance(job_id, str) else "", REJECTED, str(exc)]
        event = ev.enqueued(spec, now_ms, self.settings.task_timeout_s,
                            self.settings.max_retries)
        if not self.journal.record(event):
            self.counts[DUPLICATE] += 1
            return [spec["id"], DUPLICATE]
        self.counts[ACCEPTED] += 1
        queue = spec["q"]
        self.accepted_by_queue[queue] = self.accepted_by_queue.get(queue, 0) + 1
        return [spec["id"], ACCEPTED]
