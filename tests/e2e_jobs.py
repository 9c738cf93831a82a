"""Job functions for the end-to-end tests (allowed with ``--allow tests.e2e_jobs``).

Each run appends one line to an execution log with O_APPEND, so the tests can count how many
times a job really ran, independently of the controller's record.
"""

from __future__ import annotations

import os
import time


def record(log_path: str, tag: str, sleep_ms: float = 0) -> str:
    """Sleep ``sleep_ms``, then append ``tag`` to ``log_path``; returns the tag."""
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{tag}\n".encode())
    finally:
        os.close(fd)
    return tag


def always_fail(message: str = "always fails") -> None:
    """Raise every time."""
    raise ValueError(message)


def step(log_path: str, tag: str, sleep_ms: float = 0) -> str:
    """Log ``start TAG NS`` and, once done, ``end TAG NS`` (nanosecond wall-clock times), for
    the workflow tests to check that no job started before its parents ended."""
    _line(log_path, f"start {tag} {time.time_ns()}")
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    _line(log_path, f"end {tag} {time.time_ns()}")
    return tag


def accumulate(value: int) -> int:
    """``value`` plus the sum of the parents' results (``pass_results``)."""
    import fleet

    return value + sum(fleet.current_job().parent_results.values())


def parent_results() -> dict:
    """The parents' results this job received, as they came."""
    import fleet

    return fleet.current_job().parent_results


def _line(log_path: str, text: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)


def whoami() -> dict:
    """What ``fleet.current_job()`` says inside a sync job."""
    import dataclasses

    import fleet

    return dataclasses.asdict(fleet.current_job())


async def whoami_async() -> dict:
    """What ``fleet.current_job()`` says inside a coroutine job, after an await."""
    import asyncio
    import dataclasses

    import fleet

    await asyncio.sleep(0)
    return dataclasses.asdict(fleet.current_job())


def timed(log_path: str, tag: str, sleep_ms: float = 0) -> str:
    """Log ``start TAG NS PID`` and, once done, ``end TAG NS`` (nanosecond wall-clock times),
    for the flow-control tests to measure overlaps and to kill a running job's executor."""
    _line(log_path, f"start {tag} {time.time_ns()} {os.getpid()}")
    if sleep_ms:
        time.sleep(sleep_ms / 1000)
    _line(log_path, f"end {tag} {time.time_ns()}")
    return tag
