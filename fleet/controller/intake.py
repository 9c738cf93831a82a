"""Enqueue: intake requests in, ENQUEUE events recorded, receipts out (after the commit).

No request can stop the controller: one that is not JSON, has no request id, is over
``max_message_bytes`` (left unread in Redis but for its first bytes) or trips anything while
it is handled is counted and logged, and answered when its request id can be found (one that
tripped after recording some of its jobs is not: a rejection would deny jobs that will run,
and its client's timeout says they may have been accepted). A job that trips anything is
rejected with a reason; the other jobs of its request are handled as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ..errors import JobSpecError
from ..job import validate_spec
from ..protocol.intake import (
    ACCEPTED,
    DUPLICATE,
    REJECTED,
    decode_request,
    encode_receipt,
    encode_refusal,
    request_id_in_head,
)
from ..state import events as ev
from ..transport import Item, Oversized
from .journal import Journal
from .options import IntakeOptions

log = logging.getLogger("fleet.controller")


class Intake:
    """Turns intake requests into events and receipts."""

    def __init__(self, journal: Journal, options: IntakeOptions) -> None:
        self.journal = journal
        self.options = options
        self.malformed = 0
        self.counts = {ACCEPTED: 0, DUPLICATE: 0, REJECTED: 0}
        self.accepted_by_queue: dict[str, int] = {}

    def handle(self, requests: Sequence[Item], now_ms: int) -> list[tuple[str, bytes]]:
        """Record every acceptable job; returns ``(request id, receipt)`` pairs to send."""
        receipts = []
        for raw in requests:
            first_seq = self.journal.next_seq
            try:
                receipt = self._handle_one(raw, now_ms)
            except Exception as exc:  # noqa: BLE001 - no content of a message may stop the controller
                self.malformed += 1
                log.exception("dropped an intake request that could not be handled: %.200r",
                              raw)
                receipt = None if self.journal.next_seq != first_seq else _refusal(
                    _head(raw), f"the controller could not handle this request "
                                f"({type(exc).__name__}); none of its jobs was recorded")
            if receipt is not None:
                receipts.append(receipt)
        return receipts

    def _handle_one(self, raw: Item, now_ms: int) -> tuple[str, bytes] | None:
        if isinstance(raw, Oversized) or len(raw) > self.options.max_message_bytes:
            return self._refuse_oversized(raw)
        request = self._parse(raw)
        if request is None:
            return self._refuse_unreadable(raw)
        request_id, jobs = request
        results = [self._accept(job, now_ms) for job in jobs] if isinstance(
            jobs, list) else [["", REJECTED, "request has no list of jobs"]]
        return request_id, encode_receipt(request_id, results)

    def _refuse_oversized(self, raw: Item) -> tuple[str, bytes] | None:
        size = raw.size_bytes if isinstance(raw, Oversized) else len(raw)
        self.malformed += 1
        reason = (f"the request is {size} bytes; at most {self.options.max_message_bytes} "
                  "allowed (send fewer jobs per request)")
        request_id = request_id_in_head(_head(raw))
        log.warning("refused an intake request of %d bytes%s", size,
                    f" ({request_id})" if request_id else "")
        return _refusal(_head(raw), reason)

    def _refuse_unreadable(self, raw: bytes) -> tuple[str, bytes] | None:
        """A request that is not JSON (NaN, a lone surrogate, cut short) but whose first bytes
        name it gets an answer, rather than leaving its client to time out."""
        return _refusal(_head(raw),
                        "the request is not valid JSON (NaN, Infinity or a lone surrogate?)")

    def _parse(self, raw: bytes) -> tuple[str, Any] | None:
        request = decode_request(raw)
        if request is None:
            self.malformed += 1
            log.warning("dropped a malformed intake request (%d bytes)", len(raw))
        return request

    def _accept(self, wire: Any, now_ms: int) -> list[str]:
        job_id = wire.get("id") if isinstance(wire, dict) else None
        try:
            spec = validate_spec(wire)
            make = ev.enqueued
            if "dep" in spec:
                make = ev.enqueued_after
                if spec["id"] not in self.journal.table:  # a duplicate is answered as one
                    self._check_parents(spec)
            event = make(spec, now_ms, self.options.defaults.task_timeout_s,
                         self.options.defaults.max_retries)
        except (JobSpecError, TypeError, ValueError) as exc:
            # TypeError / ValueError: what validation missed and encoding refused; the job was
            # not recorded, so it is rejected like any invalid job.
            self.counts[REJECTED] += 1
            return [job_id[:200] if isinstance(job_id, str) else "", REJECTED, str(exc)]
        except Exception as exc:  # noqa: BLE001 - one job's fault must not cost its request
            # Nothing was recorded for it yet (``record`` comes after): rejecting it is true,
            # and the jobs beside it, some maybe recorded already, still get their receipt.
            log.exception("an intake job could not be handled: %.200r", job_id)
            self.counts[REJECTED] += 1
            return [job_id[:200] if isinstance(job_id, str) else "", REJECTED,
                    f"the controller could not handle this job ({type(exc).__name__})"]
        if not self.journal.record(event):
            self.counts[DUPLICATE] += 1
            return [spec["id"], DUPLICATE]
        self.counts[ACCEPTED] += 1
        queue = spec["q"]
        self.accepted_by_queue[queue] = self.accepted_by_queue.get(queue, 0) + 1
        return [spec["id"], ACCEPTED]

    def _check_parents(self, spec: dict[str, Any]) -> None:
        """Every parent must be known now (so the graph cannot have a cycle): one accepted
        earlier, in this request or before.

        Raises:
            JobSpecError: naming the first unknown parent.
        """
        table = self.journal.table
        for parent in spec["dep"]:
            if parent not in table:
                raise JobSpecError(
                    f"job {spec['id']}: unknown parent {parent!r} (never enqueued, or finished "
                    f"and forgotten after retention_s={self.options.retention_s:g})")


def _head(raw: Item) -> bytes:
    """The first bytes of a request, where the client writes its id."""
    return raw.head if isinstance(raw, Oversized) else raw[:512]


def _refusal(head: bytes, reason: str) -> tuple[str, bytes] | None:
    """A receipt refusing a whole request whose jobs were not read (one result names the
    request, and ``error`` says why), if its first bytes name it; None if they do not."""
    request_id = request_id_in_head(head)
    return None if request_id is None else (request_id, encode_refusal(request_id, reason))
