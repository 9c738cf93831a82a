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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .wire import WorkerLog

FLUSH_S = 0.2
MAX_LINES = 512
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"  # fleet worker's log lines


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
            line = self.format(record) + "\n"
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)
            return
        self._lines.append(line)
        if (record.levelno >= logging.WARNING or len(self._lines) >= MAX_LINES
                or time.monotonic() - self._flushed_mono >= self.flush_s):
            self._write()

    def add_line(self, line: str) -> None:
        """Take one formatted INFO line (``line_writer``), under the handler's lock."""
        self.acquire()
        try:
            self._lines.append(line)
            if len(self._lines) >= MAX_LINES or \
                    time.monotonic() - self._flushed_mono >= self.flush_s:
                self._write()
        finally:
            self.release()

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


def line_writer(logger: logging.Logger) -> Callable[[str], None] | None:
    """A fast way to log INFO lines on ``logger``: it formats the line as LINE_FORMAT would
    and hands it to the handler, skipping the LogRecord and Formatter (most of a line's cost,
    paid once per job). None, to log normally, unless the root logger's only handler is a
    BatchedStreamHandler formatting with LINE_FORMAT and ``logger`` would pass an INFO record
    straight to it (no handler or filter of its own on the way)."""
    root = logging.getLogger()
    handlers = root.handlers
    if len(handlers) != 1 or not isinstance(handlers[0], BatchedStreamHandler):
        return None
    handler = handlers[0]
    if getattr(handler.formatter, "_fmt", None) != LINE_FORMAT or handler.filters \
            or handler.level > logging.INFO or not logger.isEnabledFor(logging.INFO):
        return None
    node: logging.Logger | None = logger
    while node is not None and node is not root:
        if node.handlers or node.filters or not node.propagate:
            return None
        node = node.parent
    name, stamp = logger.name, ["", -1]

    def write(message: str) -> None:
        now_s = time.time()
        second = int(now_s)
        if second != stamp[1]:
            stamp[:] = [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)), second]
        handler.add_line(f"{stamp[0]},{int((now_s - second) * 1000):03d} INFO {name} "
                         f"{message}\n")

    return write


def flush_logs() -> None:
    """Flush every handler of the root logger (cheap when nothing is buffered)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def log_job(jobs_log: WorkerLog, line: Callable[[str], None] | None, message: dict[str, Any],
            ok: bool, took_s: float, error: str) -> None:
    """The line of one finished job: preformatted through ``line`` when given, else a
    ``logging`` record whose extra fields are a JSON line's (fleet/logs.py)."""
    outcome = "ok" if ok else "failed"
    text = (f"job {_shown(message['id'])} attempt {message['n']} {_shown(message.get('f'))} "
            f"{outcome} in {took_s:.3f} s" + ("" if ok else f": {error}"))
    if line is not None:
        line(f"[{jobs_log.who}] {text}")
    else:
        jobs_log.logger.info("[%s] %s", jobs_log.who, text, extra={
            "job_id": message["id"], "attempt": message["n"], "queue": message.get("q"),
            "outcome": outcome, "took_s": round(took_s, 6), "worker": jobs_log.who,
            "error": None if ok else error})


def _shown(value: Any) -> str:
    """``value`` for a log line: as it is when printable, else quoted, so that an id or func
    holding a newline (anyone who can write to Redis picks them) cannot forge a line."""
    text = str(value)
    return text if text.isprintable() else repr(text)
