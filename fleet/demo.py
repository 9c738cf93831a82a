"""Jobs for the demo, the tests and the benchmark. ``fleet.demo`` is always allow-listed.

``simulate`` is the original plan's simulated task: it sleeps 0-500 ms and fails 10% of the
time. The others are small tools: ``noop`` (throughput), ``sleep`` (a job of known length),
``fail_once`` (a job that succeeds on its retry).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

FAILURE_RATE = 0.10
MAX_SLEEP_MS = 500


def simulate(value: Any = None, **kwargs: Any) -> dict[str, Any]:
    """Sleep 0-500 ms, then fail one time in ten (RuntimeError) or return what was done."""
    slept_ms = random.randint(0, MAX_SLEEP_MS)
    time.sleep(slept_ms / 1000)
    if random.random() < FAILURE_RATE:
        raise RuntimeError(f"simulated failure after {slept_ms} ms (value={value!r})")
    result: dict[str, Any] = {"value": value, "slept_ms": slept_ms}
    if kwargs:
        result["extra"] = kwargs
    return result


def noop() -> None:
    """Do nothing: the cost of a job is then the queue's own."""
    return None


def sleep(ms: float) -> float:
    """Sleep ``ms`` milliseconds and return them."""
    time.sleep(ms / 1000)
    return ms


def fail_once(marker_path: str) -> str:
    """Fail the first time (creating ``marker_path``), succeed every time after."""
    try:
        fd = os.open(marker_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return "succeeded on a retry"
    os.close(fd)
    raise RuntimeError(f"first attempt fails on purpose (marker {marker_path} created)")


def total(*values: float) -> float:
    """``values`` plus every parent's result (``pass_results``): for chains and groups."""
    from .context import current_job

    job = current_job()
    parents = job.parent_results.values() if job is not None else ()
    return sum(values) + sum(parents)
