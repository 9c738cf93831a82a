"""Intake requests (client -> controller) and their receipts (protocol §1).

A request is ``{"req": id, "ts": ms, "jobs": [wire spec, ...]}``, its id written first so that
the head of a request too big to read still names it. A receipt is ``{"req": id, "results":
[[job id, status(, reason)], ...]}``; a request refused as a whole also has ``"error"``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import JobSpecError
from .request_id import decode_with_id
from .signing import Seal

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"
STATUSES = (ACCEPTED, DUPLICATE, REJECTED)
NAMED_IDS = 3  # job ids a whole-request refusal names
REQUEST_CHUNK = 1000  # jobs per request at most
# Requests are cut by size too, far below the controller's max_message_bytes (64 MiB): 1,000
# jobs of 70 KB would otherwise be refused whole. A lower max_message_bytes in the client's
# settings (set like the controller's) lowers the cut with it, leaving room for the seal.
REQUEST_BYTES = 8 * 1024 * 1024
SEAL_ROOM_BYTES = 128

# The head of a request (after the seal's head, with a signing key: protocol §10).
_REQUEST_ID = re.compile(rb'^(?:~1\.\d{1,19}\.[0-9a-f]{64}\.)?'
                         rb'\s*\{\s*"req"\s*:\s*"([^"\\]{1,200})"')


def encode_request(request_id: str, ts_ms: int, jobs: list[dict[str, Any]]) -> bytes:
    """An intake request for ``jobs`` (wire specs, ``fleet.job``)."""
    return orjson.dumps({"req": request_id, "ts": ts_ms, "jobs": jobs})


def request_bytes(max_message_bytes: int) -> int:
    """How big a request a client makes (before its seal): REQUEST_BYTES, or less under a
    lower ``max_message_bytes`` (the controller refuses a bigger request whole)."""
    return max(1, min(REQUEST_BYTES, max_message_bytes - SEAL_ROOM_BYTES))


def sealed_requests(wires: list[dict[str, Any]], seal: Seal, max_bytes: int = REQUEST_BYTES
                    ) -> list[tuple[str, list[str], bytes]]:
    """``(request id, job ids, sealed body)`` for ``wires``: REQUEST_CHUNK jobs at most each,
    a chunk halved until its body is at most ``max_bytes`` (or holds one job)."""
    requests: list[tuple[str, list[str], bytes]] = []
    for start in range(0, len(wires), REQUEST_CHUNK):
        _add_requests(requests, wires[start:start + REQUEST_CHUNK], seal, max_bytes)
    return requests


def _add_requests(requests: list[tuple[str, list[str], bytes]], chunk: list[dict[str, Any]],
                  seal: Seal, max_bytes: int) -> None:
    request_id = uuid.uuid4().hex
    ts_ms = int(time.time() * 1000)
    body = encode_request(request_id, ts_ms, chunk)
    if len(body) > max_bytes and len(chunk) > 1:
        half = len(chunk) // 2
        _add_requests(requests, chunk[:half], seal, max_bytes)
        _add_requests(requests, chunk[half:], seal, max_bytes)
        return
    requests.append((request_id, [wire["id"] for wire in chunk], seal.seal(body, ts_ms)))


def decode_request(raw: bytes) -> tuple[str, Any] | None:
    """``(request id, jobs)`` of a request (``jobs`` as sent: the intake checks each); None
    when it is not JSON or names no usable request id."""
    decoded = decode_with_id(raw)
    return None if decoded is None else (decoded[0], decoded[1].get("jobs"))


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
