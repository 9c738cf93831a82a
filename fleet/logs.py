"""How controller and worker lines look: human (the default) or one JSON object a line.

``--log-format json`` (or ``log_format: json`` in the config, ``FLEET_LOG_FORMAT=json``)
writes each record as ``{"ts", "level", "logger", "msg"}`` plus, where they apply, the
``job_id``, ``attempt``, ``queue``, ``outcome`` and ``worker`` a record carries in its
``extra`` (the worker's line per finished job has them all), and ``exc`` for a traceback.
"""

from __future__ import annotations

import logging
import time

import orjson

LOG_FORMATS = ("human", "json")
JOB_FIELDS = ("job_id", "attempt", "queue", "outcome", "took_s", "error", "worker")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a message's newlines are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for name in JOB_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def formatter(log_format: str, human_format: str) -> logging.Formatter:
    """The formatter for ``log_format`` (``human`` lines use ``human_format``)."""
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(human_format)
