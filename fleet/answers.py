"""How ``Client`` and ``AsyncClient`` take the controller's answers: a seal opened for its own
request, and the errors when no answer comes. (The answers themselves, receipts and replies,
are encoded and decoded in ``fleet.protocol``.)"""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import ControllerUnavailableError, FleetError, NoReceiptError, TransportError
from .protocol.signing import Seal, SignatureError
from .transport import ClientWire

# A controller re-claims a lease Redis lost on its next step (milliseconds); a lease absent
# for this long means nobody is serving the namespace.
NO_CONTROLLER_GRACE_S = 1.5
ABSENT_POLL_S = 0.25
# While Redis is out of reach mid-wait (a failover: the master is gone, a replica is being
# promoted), try again this often until the deadline.
RECONNECT_POLL_S = 0.2


def opened(seal: Seal, body: bytes, request_id: str) -> bytes | None:
    """The payload of an answer to ``request_id``; None when its seal does not open for this
    request (someone else's answer: skip it). Without a key the body is the payload."""
    if not seal:
        return body
    try:
        return seal.open(body, request_id.encode("utf-8"))[1]
    except SignatureError:
        return None


def wait_answer(wire: ClientWire, seal: Seal, key: str, request_id: str, deadline: float,
                present: bool, nobody: Callable[[], FleetError],
                resend: Callable[[], object] | None = None) -> bytes | None:
    """The controller's answer to ``request_id`` on ``key`` by ``deadline`` (monotonic), or
    None if none came; raises ``nobody()`` once no controller has held the lease for
    NO_CONTROLLER_GRACE_S (``present``: whether one held it when the request was sent). With
    a key set, an answer whose seal does not open for this request is someone else's: it is
    skipped.

    With ``resend``, losing Redis mid-wait is not an error: once Redis answers again the
    request is sent again (``resend()``: the same request, the same job ids, which the
    controller reports as duplicate if the first copy got through), since a failover may
    have lost the first copy with the old master; without, the TransportError is raised."""
    absent_since = None if present else time.monotonic()
    broken = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            if broken and resend is not None:
                resend()
                broken = False
            body = wire.wait(key, remaining if absent_since is None
                             else min(remaining, ABSENT_POLL_S))
            serving = body is None and wire.controller_present()
        except TransportError:
            if resend is None:
                raise
            broken = True
            time.sleep(min(RECONNECT_POLL_S, remaining))
            continue
        if body is not None:
            payload = opened(seal, body, request_id)
            if payload is None:
                continue
            return payload
        if serving:
            absent_since = None
        elif absent_since is None:
            absent_since = time.monotonic()
        elif time.monotonic() - absent_since >= NO_CONTROLLER_GRACE_S:
            raise nobody()


def await_controller(wire: ClientWire, namespace: str, deadline: float) -> None:
    """Return once a controller holds the lease; nothing is sent to a namespace nobody
    serves, so a request refused here is never carried out later.

    Raises:
        ControllerUnavailableError: none did within NO_CONTROLLER_GRACE_S (or the deadline).
    """
    absent_since = time.monotonic()
    while not wire.controller_present():
        now = time.monotonic()
        if now - absent_since >= min(NO_CONTROLLER_GRACE_S, deadline - absent_since):
            raise no_controller(namespace, NOTHING_SENT)
        time.sleep(ABSENT_POLL_S)


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
