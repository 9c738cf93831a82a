"""Flow control's vocabulary: a job's key, priority and expiry, and a queue's limits.

Both ends check with these functions: the client before sending, the controller before
accepting a job or a limit, the CLI and the config file before asking. Each raises with a
one-line reason naming the bad value (docs/flow-control.md has the semantics).

A job's flow travels in the wire spec as ``py`` (priority), ``ky`` (key) and ``ex``
(expires_s); the controller keeps it as ``[priority, expires_at_ms, key]`` (``Flow``) at the
end of the job's spec text (``fleet.state.events``).
"""

from __future__ import annotations

import math
import re
from typing import Any

from .errors import ConfigError, JobSpecError
from .names import good_queue, recorded_queue

MAX_KEY_CHARS = 200
MIN_PRIORITY, MAX_PRIORITY = 0, 9
MAX_EXPIRES_S = 365 * 24 * 3600
MAX_CONCURRENCY = 1_000_000
MAX_PER_KEY = 1_000_000
MAX_RATE_PER_S = 1_000_000.0
# A rate's bucket holds a tenth of a second's worth of dispatches, at least one: a job may
# start at most that many ahead of an even spacing (docs/flow-control.md, "Rate").
BURST_S = 0.1

LIMIT_KINDS = ("concurrency", "rate", "per_key")
PERIODS_S = {"s": 1, "m": 60, "h": 3600}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([smh])\s*$", re.ASCII)

# [priority, expires_at_ms (0: never), key (None: none)]
Flow = list[Any]


def check_flow(job_id: str, wire: dict[str, Any]) -> dict[str, Any]:
    """A wire spec's ``py``, ``ky`` and ``ex`` fields, checked (absent ones left out).

    Raises:
        JobSpecError: a priority outside 0-9, a key that is not 1-200 printable characters,
            an expiry that is not a positive number of seconds up to a year.
    """
    out: dict[str, Any] = {}
    priority = wire.get("py", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) \
            or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise JobSpecError(f"job {job_id}: priority must be an integer 0-9, got "
                           f"{_shown(priority)}")
    if priority:
        out["py"] = priority
    key = wire.get("ky")
    if key is not None:
        out["ky"] = check_key(job_id, key)
    expires = wire.get("ex")
    if expires is not None:
        if isinstance(expires, bool) or not isinstance(expires, int | float) \
                or not math.isfinite(expires) or not 0 < expires <= MAX_EXPIRES_S:
            raise JobSpecError(f"job {job_id}: expires_s must be a number of seconds in "
                               f"(0, {MAX_EXPIRES_S}], got {_shown(expires)}")
        out["ex"] = expires
    return out


def check_key(job_id: str, key: Any) -> str:
    """``key`` once checked: a string of 1-200 printable characters."""
    if not isinstance(key, str):
        raise JobSpecError(f"job {job_id}: key must be a string, got {_shown(key)}")
    if not 0 < len(key) <= MAX_KEY_CHARS or not key.isprintable():
        raise JobSpecError(f"job {job_id}: key must be 1-{MAX_KEY_CHARS} printable "
                           f"characters, got {_shown(key)}")
    return key


def flow_of(wire: dict[str, Any], at_ms: int) -> Flow | None:
    """The flow the controller keeps for an accepted wire spec (None: a plain job).

    The expiry becomes a time: ``expires_s`` after the job's run-at time, or after ``at_ms``
    (its acceptance) for a job to run at once or at a time already past (a run-at time from
    a client whose clock is behind must not expire the job on arrival).
    """
    priority, key, expires = wire.get("py", 0), wire.get("ky"), wire.get("ex")
    if not priority and key is None and expires is None:
        return None
    expires_at_ms = 0
    if expires is not None:
        expires_at_ms = max(wire.get("nb") or 0, at_ms) + max(1, round(expires * 1000))
    return [priority, expires_at_ms, key]


# -- a queue's limits ----------------------------------------------------------------------


def parse_rate(text: Any) -> list[float]:
    """``"10/s"``, ``"100/m"``, ``"5/h"`` as ``[count, period_s]``.

    Raises:
        ConfigError: not of the form N/s, N/m or N/h with N > 0.
    """
    if isinstance(text, list | tuple) and len(text) == 2:  # the recorded form
        count, period = text
        if _number(count) and _number(period) and count > 0 and period in PERIODS_S.values():
            return _checked_rate(float(count), int(period), f"{count}/{period}s")
    match = _RATE_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"rate {_shown(text)} does not parse: give N/s, N/m or N/h "
                          "(e.g. 10/s, 100/m)")
    return _checked_rate(float(match.group(1)), PERIODS_S[match.group(2)], text.strip())


def _checked_rate(count: float, period_s: int, shown: str) -> list[float]:
    if not count > 0 or count / period_s > MAX_RATE_PER_S:
        raise ConfigError(f"rate {shown!r} must be more than 0 and at most "
                          f"{MAX_RATE_PER_S:,.0f} a second")
    return [count, period_s]


def rate_text(rate: list[float]) -> str:
    """A recorded rate as people write it: ``[10, 1]`` is ``10/s``."""
    count, period = rate
    unit = {v: k for k, v in PERIODS_S.items()}.get(int(period), "s")
    return f"{count:g}/{unit}"


def check_limits(queue: Any, limits: Any, recorded: bool = False) -> dict[str, Any]:
    """A queue's limits as recorded: ``concurrency`` and ``per_key`` positive integers,
    ``rate`` a ``[count, period_s]`` pair; absent kinds are unlimited. ``recorded``: read
    back from a log or snapshot, whose queue may be one an earlier fleet accepted
    (``fleet.names.RECORDED_QUEUE_RE``).

    Raises:
        ConfigError: an unknown kind, or a value out of range or of the wrong type.
    """
    if not (recorded_queue(queue) if recorded else good_queue(queue)):
        raise ConfigError(f"queue must match [A-Za-z0-9_.-]{{1,64}}, got {_shown(queue)}")
    if not isinstance(limits, dict):
        raise ConfigError(f"limits of queue {queue} must be a mapping, got {_shown(limits)}")
    unknown = sorted(set(limits) - set(LIMIT_KINDS))
    if unknown:
        raise ConfigError(f"limits of queue {queue}: unknown kind(s) {', '.join(unknown)}; "
                          f"known: {', '.join(LIMIT_KINDS)}")
    out: dict[str, Any] = {}
    for kind, most in (("concurrency", MAX_CONCURRENCY), ("per_key", MAX_PER_KEY)):
        value = limits.get(kind)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= most:
            raise ConfigError(f"{kind.replace('_', '-')} of queue {queue} must be an integer "
                              f"from 1 to {most:,}, got {_shown(value)}")
        out[kind] = value
    if limits.get("rate") is not None:
        out["rate"] = parse_rate(limits["rate"])
    return out


def limits_text(limits: dict[str, Any]) -> str:
    """A queue's limits in one line: ``concurrency 2, rate 10/s, per-key 1``."""
    parts = []
    if "concurrency" in limits:
        parts.append(f"concurrency {limits['concurrency']}")
    if "rate" in limits:
        parts.append(f"rate {rate_text(limits['rate'])} (burst {burst(limits['rate']):g})")
    if "per_key" in limits:
        parts.append(f"per-key {limits['per_key']}")
    return ", ".join(parts) or "none"


def burst(rate: list[float]) -> float:
    """How many dispatches a rate's bucket holds: a tenth of a second's worth, at least 1."""
    count, period = rate
    return max(1.0, count / period * BURST_S)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def _shown(value: Any) -> str:
    if value is None or isinstance(value, str | int | float):
        text = repr(value) if not isinstance(value, int) or abs(value) < 10 ** 30 \
            else "a huge integer"
        return text if len(text) <= 80 else text[:77] + "..."
    return f"a value of type {type(value).__name__}"
