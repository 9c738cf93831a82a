"""What the controller answers a client, read the same way by ``Client`` and ``AsyncClient``:
receipts for intake requests, replies to control requests, and the errors when none comes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import (
    ControllerUnavailableError,
    FleetError,
    JobNotFoundError,
    JobSpecError,
    NoReceiptError,
)
from .signing import Seal, SignatureError

# A controller re-claims a lease Redis lost on its next step (milliseconds); a lease absent
# for this long means nobody is serving the namespace.
NO_CONTROLLER_GRACE_S = 1.5
ABSENT_POLL_S = 0.25


@dataclass(frozen=True)
class Receipt:
    """The controller's answer for one job: accepted, duplicate or rejected (with a reason)."""

    id: str
    status: str
    reason: str = ""

    @property
    def durable(self) -> bool:
        return self.status in ("accepted", "duplicate")


def opened(seal: Seal, body: bytes, request_id: str) -> bytes | None:
    """The payload of an answer to ``request_id``; None when its seal does not open for this
    request (someone else's answer: skip it). Without a key the body is the payload."""
    if not seal:
        return body
    try:
        return seal.open(body, request_id.encode("utf-8"))[1]
    except SignatureError:
        return None


NAMED_IDS = 3  # job ids a whole-request refusal names


def receipts_from(body: bytes, ids: Sequence[str]) -> list[Receipt]:
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


def reply_data(body: bytes) -> Any:
    """The data of an opened control reply.

    Raises:
        JobNotFoundError / FleetError: the controller refused the request (its reason).
    """
    reply = orjson.loads(body)
    if not reply.get("ok"):
        error = reply.get("error", "request failed")
        if error.startswith("no job"):
            raise JobNotFoundError(error)
        raise FleetError(error)
    return reply.get("data")


def is_resend(body: bytes | None) -> bool:
    """A reply asking for the request again: the controller (re)started after it was sealed."""
    return body is not None and body.startswith(b'{"ok":false,"error":"RESEND:')


def nobody_for_jobs(namespace: str, total: int) -> NoReceiptError:
    return NoReceiptError(
        f"no controller is serving namespace {namespace!r}: the {total} job(s) "
        "wait on its intake list and may still be accepted, when a controller starts; "
        "re-sending the same ids is safe (they will be reported as duplicate)")


def late_receipt(timeout_s: float, total: int) -> NoReceiptError:
    return NoReceiptError(
        f"no receipt from the controller within {timeout_s:g} s for "
        f"{total} job(s): they may still be accepted later; re-sending the same ids is "
        "safe (they will be reported as duplicate)")


def no_controller(namespace: str, detail: str) -> ControllerUnavailableError:
    return ControllerUnavailableError(
        f"no controller is serving namespace {namespace!r} ({detail}); start "
        "`fleet controller` against this Redis, or check --namespace / FLEET_NAMESPACE")


def no_reply(namespace: str, timeout_s: float) -> ControllerUnavailableError:
    return ControllerUnavailableError(
        f"the controller of namespace {namespace!r} did not answer within "
        f"{timeout_s:g} s (is `fleet controller` running against this Redis?)")


STOPPED_BEFORE_ANSWER = ("it stopped before answering; the request may still be carried out "
                         "when a controller starts")
NOTHING_SENT = "nothing was sent"
