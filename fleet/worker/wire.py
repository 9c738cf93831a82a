"""The worker's side of the wire: its identity, its logs and its Redis backoff. The
connection is ``fleet.transport.pipe``; messages and acks are ``fleet.protocol``
(``dispatch``, ``ack``), and ``make_ack`` here fills in who acks.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

from ..clock import now_ms
from ..errors import TransportError
from ..protocol.ack import encode_ack
from ..protocol.ack import make_ack as ack_of


@dataclass(frozen=True)
class Identity:
    """Who acks: the worker id (``host:pid:4 hex``) and the host name."""

    worker_id: str
    host: str

    @classmethod
    def new(cls) -> Identity:
        host = socket.gethostname()
        return cls(f"{host}:{os.getpid()}:{secrets.token_hex(2)}", host)




class EpochGate:
    """The highest controller epoch this executor has seen in a message (protocol §2 ``ep``).

    A message from an older epoch was dispatched by a controller that has since been
    replaced: restarted (its successor knows the job and re-dispatches it) or fenced out by
    a take-over (its successor has never heard of the job). Running it could record work
    nobody will see, so it is handed back unrun (a ``rel`` ack, not a failed attempt) and
    counted. A message without ``ep`` (an older controller) is let through.

    With a dispatch key set, only a message whose seal opened reaches the gate (the executor
    opens the seal before it parses anything), so a forged message with a huge ``ep`` cannot
    make the worker refuse the real ones. Epochs are per namespace: one gate per namespace an
    executor serves.
    """

    def __init__(self) -> None:
        self.highest = 0
        self.refused = 0

    def admits(self, message: dict[str, Any]) -> bool:
        epoch = message.get("ep")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch == self.highest:
            return True
        if epoch < self.highest:
            self.refused += 1
            return False
        self.highest = epoch
        return True

    def hand_back(self, message: dict[str, Any], identity: Identity) -> bytes:
        """The ``rel`` ack that hands a refused message back."""
        return encode_ack(make_ack(message["id"], message["n"], "rel", identity, now_ms(),
                               e=f"StaleEpoch: dispatched at controller epoch "
                                 f"{message.get('ep')}, older than {self.highest}"))


def make_ack(job_id: str, attempt: int, outcome: str, identity: Identity, started_ms: int,
             finished_ms: int | None = None, **fields: Any) -> dict[str, Any]:
    """One ack by this worker (``protocol.ack``). ``fields`` are ``r``, ``e`` or ``fin``."""
    return ack_of(job_id, attempt, outcome, identity.worker_id, identity.host, started_ms,
                  finished_ms, **fields)


def error_text(exc: BaseException, limit: int = 2000) -> str:
    """``"Type: message"`` on one line, cut to ``limit`` characters."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class WorkerLog(logging.LoggerAdapter[logging.Logger]):
    """Puts the worker id (and executor number), ``who``, at the start of every line."""

    def __init__(self, logger: logging.Logger, who: str) -> None:
        super().__init__(logger, {"who": who})
        self.who = who

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.who}] {msg}", kwargs


def worker_log(name: str, who: str) -> WorkerLog:
    return WorkerLog(logging.getLogger(name), who)


class RedisHealth:
    """Paces retries after Redis errors; logs one line when Redis goes and one when it is back."""

    def __init__(self, log: logging.LoggerAdapter[logging.Logger], first_s: float = 0.05,
                 max_s: float = 2.0) -> None:
        self.log = log
        self.first_s = first_s
        self.max_s = max_s
        self.delay_s = 0.0
        self.retry_at = 0.0

    @property
    def failing(self) -> bool:
        return self.delay_s > 0

    def may_try(self) -> bool:
        """False while backing off."""
        return time.monotonic() >= self.retry_at

    def failed(self, exc: Exception) -> float:
        """Record a failure; returns how long to wait before the next try."""
        if not self.failing:
            # A TransportError already reads "ConnectionError: ..." (transport/pipe.py).
            why = str(exc)[:200] if isinstance(exc, TransportError) else error_text(exc, 200)
            self.log.warning("redis unavailable (%s); retrying with backoff", why)
        self.delay_s = min(self.max_s, self.delay_s * 2 or self.first_s)
        self.retry_at = time.monotonic() + self.delay_s
        return self.delay_s

    def ok(self) -> None:
        if self.failing:
            self.log.info("redis reachable again")
        self.delay_s = 0.0
        self.retry_at = 0.0
