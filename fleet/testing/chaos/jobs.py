"""The chaos workload's job functions (workers run them with ``--allow fleet.testing.chaos``).

Every run first appends ``"<job id> <attempt> <pid>"`` to the execution log with one
``O_APPEND`` write, so the checker can count real executions independently of the controller's
record. The line is written before the function's outcome, so an execution cut short by a fault
after that point still counts as one. A function about to return successfully appends
``"<job id> <attempt> <pid> done"``, so the checker can tell an execution that started after
the job's successful one had already finished.
"""

from __future__ import annotations

import os
import time

from ...worker.runner import current_job


def _log_execution(log_path: str, suffix: str = "") -> str:
    job_id, attempt = current_job() or ("?", 0)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job_id} {attempt} {os.getpid()}{suffix}\n".encode())
    finally:
        os.close(fd)
    return job_id


def _log_done(log_path: str) -> str:
    return _log_execution(log_path, " done")


def fast(log_path: str) -> str:
    """Log the execution and return at once."""
    _log_execution(log_path)
    return _log_done(log_path)


def slow(log_path: str, sleep_ms: int) -> str:
    """Log the execution, then sleep ``sleep_ms`` (a fault may land while it runs)."""
    _log_execution(log_path)
    time.sleep(sleep_ms / 1000)
    return _log_done(log_path)


def flaky(log_path: str, marker_dir: str) -> str:
    """Fail on the first execution of this job, succeed on every later one.

    "First" is decided by creating ``marker_dir/<id>`` exclusively, so it holds across
    executors, hosts and restarts.
    """
    job_id = _log_execution(log_path)
    try:
        fd = os.open(os.path.join(marker_dir, job_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return _log_done(log_path)
    os.close(fd)
    raise RuntimeError("flaky: failing the first execution on purpose")


def doomed(log_path: str) -> None:
    """Fail every time: the job ends in the dead-letter set after its retries."""
    _log_execution(log_path)
    raise ValueError("doomed: always fails")
