"""Periodic jobs: the schedule file, intervals and cron expressions (all times UTC).

A schedule file is YAML, a list of entries (or ``{"schedules": [...]}``)::

    - name: nightly-report            # unique; part of every run's job id
      func: myapp.tasks:report
      cron: "0 3 * * *"               # minute hour day-of-month month day-of-week
      kwargs: {format: pdf}
    - name: ping
      func: fleet.demo:noop
      every_s: 60                     # runs at multiples of 60 s since the epoch

Each run is an ordinary job whose id is ``<name>@<fire time, ISO 8601 UTC>``, so it is
deterministic: the controller records the run's ENQUEUE and the schedule's new cursor in one
commit, and a crash can neither fire a run twice nor lose one (runs missed while the controller
was down are fired late on restart, and logged).
"""

from __future__ import annotations

import calendar
import math
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import ConfigError, JobSpecError
from ..job import DEFAULT_QUEUE, validate_spec

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12),
           ("weekday", 0, 6))
_MINUTE_MS = 60_000


class Cron:
    """A five-field cron expression: ``*``, ``*/n``, ``a-b``, ``a-b/n`` and lists of them."""

    def __init__(self, expression: str) -> None:
        if not isinstance(expression, str):
            raise ValueError(f"cron must be a string of 5 fields, got {expression!r}")
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(f"cron {expression!r} must have 5 fields "
                             "(minute hour day month weekday)")
        self.expression = expression
        sets = [_parse_field(text, name, low, high)
                for text, (name, low, high) in zip(parts, _FIELDS, strict=True)]
        self.minutes, self.hours, self.days, self.months, weekdays = sets
        self.weekdays = {d % 7 for d in weekdays}
        self.any_day, self.any_weekday = parts[2] == "*", parts[4] == "*"

    def next_after(self, after_ms: int) -> int:
        """The first matching minute strictly after ``after_ms``."""
        t = (after_ms // _MINUTE_MS + 1) * 60
        limit = t + 5 * 366 * 86400
        while t < limit:
            tm = time.gmtime(t)
            if tm.tm_mon not in self.months or not self._day_matches(tm):
                t = calendar.timegm((tm.tm_year, tm.tm_mon, tm.tm_mday, 0, 0, 0)) + 86400
            elif tm.tm_hour not in self.hours:
                t = calendar.timegm((tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, 0, 0)) + 3600
            elif tm.tm_min not in self.minutes:
                t += 60
            else:
                return t * 1000
        raise ValueError(f"cron {self.expression!r} never fires")

    def _day_matches(self, tm: time.struct_time) -> bool:
        weekday = (tm.tm_wday + 1) % 7  # cron counts from Sunday = 0
        by_day, by_weekday = tm.tm_mday in self.days, weekday in self.weekdays
        if self.any_day or self.any_weekday:
            return by_day and by_weekday
        return by_day or by_weekday  # cron's rule when both are restricted


def _parse_field(text: str, name: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    high_in = 7 if name == "weekday" else high
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, stop = low, high
        elif "-" in body:
            start, stop = (int(x) for x in body.split("-", 1))
        else:
            start = stop = int(body)
        if not (low <= start <= stop <= high_in) or step < 1:
            raise ValueError(f"cron {name} field {part!r} is out of range {low}-{high_in}")
        values.update(range(start, stop + 1, step))
    return values


@dataclass(frozen=True)
class Schedule:
    """One periodic job."""

    name: str
    func: str
    every_s: float | None = None
    cron: Cron | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    timeout_s: float | None = None
    max_retries: int | None = None

    def next_after(self, after_ms: int) -> int:
        """The first fire time strictly after ``after_ms``."""
        if self.cron is not None:
            return self.cron.next_after(after_ms)
        if self.every_s is None:  # neither: the TypeError the arithmetic below would raise
            raise TypeError(f"schedule {self.name!r} has neither every_s nor cron")
        every_ms = int(self.every_s * 1000)
        return (after_ms // every_ms + 1) * every_ms

    def job_id(self, fire_ms: int) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(fire_ms / 1000))
        return f"{self.name}@{stamp}.{fire_ms % 1000:03d}Z"

    def wire(self, fire_ms: int) -> dict[str, Any]:
        """The run's job in wire form (see fleet.job)."""
        spec: dict[str, Any] = {"id": self.job_id(fire_ms), "f": self.func, "q": self.queue,
                                "a": self.args, "k": self.kwargs}
        if self.timeout_s is not None:
            spec["to"] = self.timeout_s
        if self.max_retries is not None:
            spec["mr"] = self.max_retries
        return validate_spec(spec)


def load_schedules(path: str) -> list[Schedule]:
    """Read and check a schedule file.

    Raises:
        ConfigError: naming the file, the entry and what is wrong.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or []
    except OSError as exc:
        raise ConfigError(f"cannot read schedule file {path}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise ConfigError(f"schedule file {path} is not valid YAML") from None
    entries = data.get("schedules", []) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ConfigError(f"schedule file {path} must hold a list of schedules")
    schedules = [_schedule(path, index, entry) for index, entry in enumerate(entries, 1)]
    names = [s.name for s in schedules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"schedule file {path}: duplicate name(s) {', '.join(duplicates)}")
    return schedules


def _schedule(path: str, index: int, entry: Any) -> Schedule:
    where = f"schedule file {path}, entry {index}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping")
    known = {"name", "func", "every_s", "cron", "args", "kwargs", "queue", "timeout_s",
             "max_retries"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name or "@" in name:
        raise ConfigError(f"{where}: name must be a non-empty string without '@'")
    if ("every_s" in entry) == ("cron" in entry):
        raise ConfigError(f"{where} ({name}): give exactly one of every_s and cron")
    func: Any = entry.get("func")  # schedule.wire(0) checks it, as every field
    try:
        schedule = Schedule(
            name=name, func=func,
            every_s=_interval(entry["every_s"]) if "every_s" in entry else None,
            cron=Cron(entry["cron"]) if "cron" in entry else None,
            args=entry.get("args", []), kwargs=entry.get("kwargs", {}),
            queue=entry.get("queue", DEFAULT_QUEUE), timeout_s=entry.get("timeout_s"),
            max_retries=entry.get("max_retries"))
        schedule.wire(0)
    except (ValueError, TypeError, JobSpecError) as exc:
        raise ConfigError(f"{where} ({name}): {exc}") from None
    return schedule


def _interval(value: Any) -> float:
    """``every_s`` as given: a finite number of seconds, at least 1 (null, NaN or infinity
    would pass a schedule that stops the scheduler when it is first due)."""
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value < 1):
        raise ValueError(f"every_s must be a number of seconds >= 1, got {value!r}")
    return float(value)
