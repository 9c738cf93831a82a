"""The worker's log output: one line per finished job must not cost a system call per job.

Non-interactive stderr is line-buffered in Python 3.9+, and ``logging.StreamHandler`` flushes
after every record, so a line per job was a ``write`` per job, a fifth of a no-op job's cost.
``BatchedStreamHandler`` keeps the lines and writes them to stderr's file descriptor when a
record is a warning or worse, when ``flush_s`` has passed since the last write or MAX_LINES
are waiting, and whenever ``flush_logs`` is called: by an executor before it waits for work
and before it exits, by the supervisor at each heartbeat. A line is thus at most about
``flush_s`` late while jobs keep finishing; a SIGKILLed process loses at most that much of its
own log.
"""

from __future__ import annotations

import logging
import os
import sys
import time

FLUSH_S = 0.2
MAX_LINES = 512


class BatchedStreamHandler(logging.Handler):
    """Log lines to a file descriptor (stderr's), flushed in batches (see the module).

    A batch goes out in one ``write``, whole lines only, so the lines of the supervisor and
    its executors, which share the descriptor, never interleave inside a line.
    """

    def __init__(self, flush_s: float = FLUSH_S, fd: int | None = None) -> None:
        super().__init__()
        self.fd = sys.stderr.fileno() if fd is None else fd
        self.flush_s = flush_s
        self._lines: list[str] = []
        self._flushed_mono = 0.0
        # A forked process (an executor, or a job's own fork) must not write its parent's
        # buffered lines a second time.
        os.register_at_fork(after_in_child=self._lines.clear)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record) + "\n")
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)
            return
        if (record.levelno >= logging.WARNING or len(self._lines) >= MAX_LINES
                or time.monotonic() - self._flushed_mono >= self.flush_s):
            self._write()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write()
        finally:
            self.release()

    def _write(self) -> None:
        self._flushed_mono = time.monotonic()
        if not self._lines:
            return
        data = memoryview("".join(self._lines).encode("utf-8", "backslashreplace"))
        self._lines.clear()
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            pass  # stderr closed or full: the log is not the record


def flush_logs() -> None:
    """Flush every handler of the root logger (cheap when nothing is buffered)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
