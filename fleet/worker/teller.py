"""What an executor tells its supervisor over their Pipe (the events: executor.py's module
docstring), and which of its acks the supervisor keeps copies of."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .handle import Event


class Teller:
    """The executor's end of the Pipe: each event sent whole (a lock keeps the progress
    thread's events and the loop's apart), and the finished job not yet told.

    A finished job is told with the next job's start (``starting``) or alone (``tell_done``),
    once its ack is written; with it goes ``owed``: its ack for the supervisor to copy, and
    whether every ack told before is confirmed in Redis (then the supervisor's copies go).
    """

    def __init__(self, channel: Any, on_gone: Callable[[], None]) -> None:
        self.channel = channel
        # A real Pipe takes bytes: Connection.send's ForkingPickler costs more than the write.
        self._send_bytes = channel.send_bytes if isinstance(channel, Connection) else None
        self._lock = threading.Lock()
        self._on_gone = on_gone  # the supervisor is gone: the executor stops
        self.done: tuple[str, int, bool] | None = None  # (id, n, ok) of the job just finished
        self.done_ack: bytes | None = None  # its ack, for the supervisor's copy
        self.owed_fresh = True  # every ack told to the supervisor is confirmed in Redis

    def tell(self, event: Event) -> None:
        if self.channel is None:
            return
        try:
            with self._lock:
                if self._send_bytes is not None:
                    self._send_bytes(pickle.dumps(event, pickle.HIGHEST_PROTOCOL))
                else:
                    self.channel.send(event)
        except OSError:
            self._on_gone()

    def finished(self, job_id: str, attempt: int, ok: bool, ack: bytes) -> None:
        """A job ended with ``ack`` (not yet written): told with what comes next."""
        self.done, self.done_ack = (job_id, attempt, ok), ack

    def starting(self, job_id: str, attempt: int, started_ms: int, timeout_s: float | None,
                 held: list[tuple[str, int]]) -> None:
        """A job starts, with the prefetched ones ``held`` behind it and the one finished
        before (its ack written by now)."""
        self.tell(("s", job_id, attempt, started_ms, timeout_s, held, self.done, self._owed()))
        self.done = self.done_ack = None

    def tell_done(self) -> None:
        """The finished job alone (its ack written): before a wait, a backoff or a hand-back."""
        if self.done is not None:
            self.tell(("f", *self.done, self._owed()))
            self.done = self.done_ack = None

    def confirmed(self) -> None:
        """Redis answered for every ack written: the supervisor's copies can go."""
        self.owed_fresh = True

    def _owed(self) -> tuple[bool, bytes | None]:
        """``(reset, ack)``; from now on, the acks told are not all confirmed."""
        reset, self.owed_fresh = self.owed_fresh, False
        return reset, self.done_ack
