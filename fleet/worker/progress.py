"""An executor's job progress, carried to its supervisor (docs/protocol.md §5, "Progress").

``fleet.current_job().progress()`` may be called in a tight loop, so it only stores the
latest value here: one tuple, no I/O, no lock. A courier thread, started on the first report
an executor process sees, sends the latest value over the executor's Pipe at most every
``SEND_EVERY_S`` and only when it changed: ``("p", id, n, fraction, message, at_ms)``. The
supervisor keeps it with the running job (handle.py) and its heartbeat carries it to the
controller. The event names its attempt, so a report that arrives after the job ended (the
courier and the executor's own events share the Pipe, and either may go first) is ignored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

SEND_EVERY_S = 0.25

Latest = tuple[str, int, float, str, int]  # job id, attempt, fraction, message, at (epoch ms)


class ProgressCourier:
    """The latest progress of the job this executor runs, and the thread that sends it."""

    def __init__(self, send: Callable[[tuple[Any, ...]], None],
                 every_s: float = SEND_EVERY_S) -> None:
        self.send = send
        self.every_s = every_s
        self.latest: Latest | None = None
        self._sent: Latest | None = None
        self._thread: threading.Thread | None = None

    def reporter(self, job_id: str, attempt: int) -> Callable[[float, str], None]:
        """The ``on_progress`` of the ``CurrentJob`` of ``(job_id, attempt)``."""
        def report(fraction: float, message: str) -> None:
            self.latest = (job_id, attempt, fraction, message, int(time.time() * 1000))
            if self._thread is None:
                self._start()
        return report

    def forget(self) -> None:
        """The job ended: its progress is not sent any more."""
        self.latest = None

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fleet-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.every_s)
            self.flush()

    def flush(self) -> None:
        """Send the latest value if it is new (the courier thread's step)."""
        latest = self.latest
        if latest is not None and latest is not self._sent:
            self._sent = latest
            job_id, attempt, fraction, message, at_ms = latest
            # A lone surrogate (job code picks the text) would stop the heartbeat's encoder.
            message = message.encode("utf-8", "backslashreplace").decode("utf-8")
            self.send(("p", job_id, attempt, fraction, message, at_ms))
