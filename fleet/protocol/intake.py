"""Intake requests (client -> controller) and their receipts (protocol §1).

A request is ``{"req": id, "ts": ms, "jobs": [wire spec, ...]}``, its id written first so that
the head of a request too big to read still names it. A receipt is ``{"req": id, "results":
[[job id, status(, reason)], ...]}``; a request refused as a whole also has ``"error"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import JobSpecError

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"
STATUSES = (ACCEPTED, DUPLICATE, REJECTED)
MAX_REQUEST_ID_CHARS = 200
NAMED_IDS = 3  # job ids a whole-request refusal names

# The head of a request (after the seal's head, with a signing key: protocol §10).
_REQUEST_ID = re.compile(rb'^(?:~1\.\d{1,19}\.[0-9a-f]{64}\.)?'
                         rb'\s*\{\s*"req"\s*:\s*"([^"\\]{1,200})"')


def encode_request(request_id: str, ts_ms: int, jobs: list[dict[str, Any]]) -> bytes:
    """An intake request for ``jobs`` (wire specs, ``fleet.job``)."""
    return orjson.dumps({"req": request_id, "ts": ts_ms, "jobs": jobs})


def decode_request(raw: bytes) -> tuple[str, Any] | None:
    """``(request id, jobs)`` of a request (``jobs`` as sent: the intake checks each); None
    when it is not JSON or names no usable request id."""
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    request_id = request.get("req") if isinstance(request, dict) else None
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID_CHARS:
        return None
    return request_id, request.get("jobs")


def request_id_in_head(head: bytes) -> str | None:
    """The request id the first bytes of a request name (of one too big to read), or None."""
    match = _REQUEST_ID.match(head)
    return match.group(1).decode(errors="replace") if match else None


def encode_receipt(request_id: str, results: list[list[str]]) -> bytes:
    """A receipt: one ``[job id, status]`` or ``[job id, status, reason]`` per job."""
    return orjson.dumps({"req": request_id, "results": results})


def encode_refusal(request_id: str, reason: str) -> bytes:
    """A receipt refusing a whole request whose jobs were not read."""
    return orjson.dumps({"req": request_id, "error": reason,
                         "results": [["", REJECTED, reason]]})


@dataclass(frozen=True)
class Receipt:
    """The controller's answer for one job: accepted, duplicate or rejected (with a reason)."""

    id: str
    status: str
    reason: str = ""

    @property
    def durable(self) -> bool:
        return self.status in (ACCEPTED, DUPLICATE)


def decode_receipt(body: bytes, ids: Sequence[str]) -> list[Receipt]:
    """The Receipts in an opened receipt body for a request of the jobs ``ids``.

    Raises:
        JobSpecError: the controller refused the request as a whole (naming its first jobs).
    """
    receipt = orjson.loads(body)
    if receipt.get("error"):  # the request as a whole was refused, its jobs unread
        named = ", ".join(ids[:NAMED_IDS]) + (", ..." if len(ids) > NAMED_IDS else "")
        raise JobSpecError(f"the controller refused {len(ids)} job(s) ({named}): "
                           f"{receipt['error']}")
    results = receipt.get("results", [])
    return [Receipt(r[0], r[1], r[2] if len(r) > 2 else "") for r in results]
