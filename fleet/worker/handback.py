"""Handing back what an executor holds: prefetched messages it will not start, and acks it
could not push (to its supervisor, who pushes them). The executor's stop and its hold limit
come here (executor.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..clock import now_ms
from ..errors import TransportError
from ..protocol.ack import encode_ack
from .wire import make_ack

if TYPE_CHECKING:
    from .executor import Executor

HELD_TOO_LONG = "PrefetchHeld: prefetched message handed back unrun, held behind a slow job"
HAND_BACK_TRIES = 3


def hand_back(ex: Executor) -> None:
    """Release prefetched messages, push what is unpushed, give the rest to the supervisor."""
    ex.teller.tell_done()
    release_held(ex, "WorkerShutdown: prefetched message handed back unrun")
    for _ in range(HAND_BACK_TRIES):
        if not (ex.outbox.unpushed or ex.outbox.sent):
            break
        try:
            ex.outbox.push_alone()
        except TransportError as exc:
            time.sleep(ex.health.failed(exc))
    ex.outbox.unsent()  # still unread after the tries: the supervisor pushes them
    ex.teller.tell(("x", ex.outbox.unpushed))


def hand_back_held(ex: Executor) -> None:
    """Release the prefetched messages held too long, and only once their ``rel`` acks
    are in Redis tell the supervisor it holds them no more: killed before, the
    supervisor still names them in the acks it owes (not a lease run out unstarted,
    which would count as a failed attempt)."""
    release_held(ex, HELD_TOO_LONG)
    try:
        ex.outbox.push_alone()
    except TransportError as exc:
        time.sleep(ex.health.failed(exc))  # pushed with the next write
        return
    ex.teller.tell(("r",))


def release_held(ex: Executor, why: str) -> None:
    """Ack every prefetched message not yet started ``rel`` (pushed with the next write):
    the controller dispatches it again, a new attempt that costs no retry. Their copies in
    the taken list are removed with the next pop (a ``rel`` ack ends the attempt they name,
    so a copy left there by a crash is never taken for an unstarted current attempt)."""
    ex.stale_taken += [raw for _, raw in ex.buffer if raw is not None]
    for message, _ in ex.buffer:
        ack = make_ack(message["id"], message["n"], "rel", ex.runner.identity, now_ms(),
                       e=why, **ex.runner.ack_fields(message))
        ex.outbox.add(ex.runner.seal_ack(encode_ack(ack)))
    ex.buffer.clear()
