"""The controller's signature gate: what arrives from Redis is opened here, before any parsing.

One ``Gate`` per controller. Each list the loop reads passes through it (``intake``, ``acks``,
``control``, ``beats``); what comes out is the plain JSON of messages whose seal matched, and
everything else is counted by source (``fleet_rejected_signatures_total``) and logged once per
burst. Replays are refused here too (docs/security.md, "Replays"):

- intake and control requests must be sealed within ``signing_window_s`` of the controller's
  clock, and a seal is accepted once (remembered for the window);
- control requests must also be sealed after this controller started, so a request captured
  before a restart cannot be played again after it (a genuine one sent while the controller
  was down is answered ``RESEND``, and the client sends it again with a fresh seal);
- heartbeats must be sealed after the start (one from before is ignored, not counted: every
  restart finds some), within the window, and never older than the newest one already seen
  from the same worker;
- acks need no window: the ``(id, attempt)`` fence, and the enqueue time an ack echoes, make
  a replayed ack stale in the job table.

Answers (receipts and replies) are sealed here with the request id as context, so a client
takes only the answer meant for its own request.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from ..protocol.control import decode_control, resend_reply
from ..protocol.heartbeat import worker_id_of
from ..protocol.signing import (
    ACK,
    BEAT,
    CONTROL,
    DISPATCH,
    INTAKE,
    RECEIPT,
    REPLY,
    BurstLog,
    Seal,
    SignatureError,
)
from ..transport import Item, Oversized

log = logging.getLogger("fleet.controller")

SOURCES = ("intake", "acks", "control", "heartbeat")


class Gate:
    """Opens what the controller reads and seals what it answers."""

    def __init__(self, settings: Any, boot_ms: int) -> None:
        self.window_ms = int(settings.signing_window_s * 1000)
        self.boot_ms = boot_ms
        self.dispatch = Seal.of(settings, DISPATCH)
        self._intake = Seal.of(settings, INTAKE)
        self._control = Seal.of(settings, CONTROL)
        self._acks = Seal.of(settings, ACK)
        self._beats = Seal.of(settings, BEAT)
        self._receipt = Seal.of(settings, RECEIPT)
        self._reply = Seal.of(settings, REPLY)
        self.rejected = dict.fromkeys(SOURCES, 0)
        self._counted = dict.fromkeys(SOURCES, 0)
        self._burst = BurstLog(log)
        self._seen: set[bytes] = set()
        self._seen_order: deque[tuple[int, bytes]] = deque()
        self._beat_ts: dict[Any, int] = {}
        self._resend: list[tuple[str, bytes]] = []
        if self._intake and settings.retention_s < settings.signing_window_s:
            log.warning("retention_s (%g) is shorter than signing_window_s (%g): a replayed "
                        "intake request could enqueue again a job already compacted away",
                        settings.retention_s, settings.signing_window_s)

    def _reject(self, source: str, problem: str) -> None:
        self.rejected[source] += 1
        self._burst.rejected(source, problem)

    def take_counts(self) -> dict[str, int]:
        """Rejections per source since the last call (for the Prometheus counter)."""
        deltas = {source: n - self._counted[source] for source, n in self.rejected.items()
                  if n > self._counted[source]}
        self._counted = dict(self.rejected)
        return deltas

    # -- in ------------------------------------------------------------------------------

    # Without a key, what was read passes as it is, Oversized items included. With one, an
    # Oversized item (left in Redis but for its first bytes) cannot have its seal checked:
    # an oversized request still passes, since all it gets is a rejection naming its size
    # (so the client learns at once, instead of waiting for a receipt); an oversized ack is
    # refused and counted, since an ack acts on the record.

    def intake(self, raws: list[Item], now_ms: int) -> Sequence[Item]:
        if not self._intake or not raws:
            return raws
        return self._requests(self._intake, "intake", raws, now_ms, floor_ms=0, once=False)

    def control(self, raws: list[Item], now_ms: int) -> Sequence[Item]:
        if not self._control or not raws:
            return raws
        return self._requests(self._control, "control", raws, now_ms, floor_ms=self.boot_ms,
                              once=True)

    def acks(self, raws: list[Item], now_ms: int) -> Sequence[Item]:
        if not self._acks or not raws:
            return raws
        opened: list[Item] = []
        for raw in raws:
            if isinstance(raw, Oversized):
                self._reject("acks", f"an ack of {raw.size_bytes} bytes, over the limit: its "
                                     "seal cannot be checked")
                continue
            try:
                opened.append(self._acks.open(raw)[1])
            except SignatureError as exc:
                self._reject("acks", str(exc))
        return opened

    def _requests(self, seal: Seal, source: str, raws: list[Item], now_ms: int,
                  floor_ms: int, once: bool) -> list[Item]:
        """Open requests sealed within the window (after ``floor_ms``); with ``once``, each
        seal is taken once. Intake needs no memory: a replayed job id is a duplicate.
        An Oversized request passes unopened (see above)."""
        self._forget(now_ms)
        opened: list[Item] = []
        for raw in raws:
            if isinstance(raw, Oversized):
                opened.append(raw)
                continue
            try:
                ts_ms, body = seal.open(raw)
            except SignatureError as exc:
                self._reject(source, str(exc))
                continue
            problem = self._stale(ts_ms, now_ms, floor_ms)
            if ts_ms < floor_ms and self._ask_resend(body):
                continue
            head = raw[:len(raw) - len(body)]
            if once and not problem and head in self._seen:
                problem = "a replay of a request already taken"
            if problem:
                self._reject(source, f"{source} request {problem}")
                continue
            if once:
                self._seen.add(head)
                self._seen_order.append((ts_ms, head))
            opened.append(body)
        return opened

    def _ask_resend(self, body: bytes) -> bool:
        """Queue a RESEND answer to a genuine request sealed before the start."""
        request = decode_control(body)
        if request is None:
            return False
        self._resend.append((request[0], resend_reply()))
        return True

    def resend_replies(self) -> list[tuple[str, bytes]]:
        """RESEND answers owed (sealed with the other replies after the commit)."""
        owed, self._resend = self._resend, []
        return owed

    def _stale(self, ts_ms: int, now_ms: int, floor_ms: int) -> str:
        if ts_ms < floor_ms:
            return "sealed before this controller started"
        if abs(now_ms - ts_ms) > self.window_ms:
            return (f"sealed {(now_ms - ts_ms) / 1000:+.0f} s from the controller's clock, "
                    f"outside signing_window_s (a replay, or clocks out of step)")
        return ""

    def _forget(self, now_ms: int) -> None:
        """Seals older than the window are refused by their time; no need to remember them."""
        order = self._seen_order
        while order and order[0][0] < now_ms - self.window_ms:
            self._seen.discard(order.popleft()[1])

    def beats(self, raws: list[bytes], now_ms: int) -> list[bytes]:
        """Heartbeats with a good seal, newer than the start, fresh, and not older than the
        newest seen from their worker (one per worker: a copy under another key is dropped)."""
        if not self._beats or not raws:
            return raws
        newest: dict[Any, tuple[int, bytes]] = {}
        for raw in raws:
            try:
                ts_ms, body = self._beats.open(raw)
                worker_id = _beat_id(body)
            except SignatureError as exc:
                self._reject("heartbeat", str(exc))
                continue
            if ts_ms < self.boot_ms:
                continue  # genuine but from before the start (a restart): just not fresh
            problem = self._stale(ts_ms, now_ms, self.boot_ms)
            if not problem and ts_ms < self._beat_ts.get(worker_id, 0):
                problem = "older than one already seen from this worker (a replay)"
            if problem:
                self._reject("heartbeat", f"heartbeat of {worker_id!r} {problem}")
            elif worker_id not in newest or newest[worker_id][0] < ts_ms:
                newest[worker_id] = (ts_ms, body)
        # Remembered for the window even while a worker's key is missing (DELeted, then an
        # old beat SET back); past the window the time check refuses an old beat anyway.
        seen = {worker_id: ts for worker_id, ts in self._beat_ts.items()
                if ts >= now_ms - self.window_ms}
        for worker_id, (ts, _) in newest.items():
            seen[worker_id] = max(ts, seen.get(worker_id, 0))
        self._beat_ts = seen
        return [body for _, body in newest.values()]

    # -- out -----------------------------------------------------------------------------

    def receipts(self, answers: list[tuple[str, bytes]], now_ms: int) -> list[tuple[str, bytes]]:
        return self._answers(self._receipt, answers, now_ms)

    def replies(self, answers: list[tuple[str, bytes]], now_ms: int) -> list[tuple[str, bytes]]:
        return self._answers(self._reply, answers, now_ms)

    @staticmethod
    def _answers(seal: Seal, answers: list[tuple[str, bytes]], now_ms: int
                 ) -> list[tuple[str, bytes]]:
        if not seal or not answers:
            return answers
        return [(req, seal.seal(body, now_ms, req.encode("utf-8"))) for req, body in answers]


def _beat_id(body: bytes) -> Any:
    """The worker id a sealed heartbeat names (the seal is already checked)."""
    worker_id = worker_id_of(body)
    if worker_id is None:
        raise SignatureError("sealed heartbeat without a worker id (or not JSON)")
    return worker_id
