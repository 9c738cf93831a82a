"""Job specs: building them from a call (``fleet.spec``, ``build_spec``, ``Task.spec``) and
checking them before they are sent (the controller checks them again)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from .errors import JobSpecError
from .job import DEFAULT_QUEUE, JobSpec, file_entry_wire, new_job_id, validate_spec
from .options import check_call, check_options, parent_ids


def spec(func: str | Callable[..., Any], *args: Any, job_id: str | None = None,
         queue: str = DEFAULT_QUEUE, timeout_s: float | None = None,
         max_retries: int | None = None, delay_s: float | None = None,
         run_at: float | None = None, depends_on: Sequence[Any] | None = None,
         allow_failure: bool = False, pass_results: bool = False, key: str | None = None,
         priority: int = 0, expires_s: float | None = None, **kwargs: Any) -> JobSpec:
    """The JobSpec ``Client.enqueue`` would send for the same call (``fleet.spec``), for
    ``enqueue_many`` or ``enqueue_spec``; the options are ``enqueue``'s.

    Raises:
        JobSpecError: as ``Client.enqueue`` does before sending.
    """
    check_options(func, kwargs)
    check_call(func, args, kwargs)
    return build_spec(func, args, kwargs, job_id=job_id, queue=queue, timeout_s=timeout_s,
                      max_retries=max_retries, delay_s=delay_s, run_at=run_at,
                      depends_on=depends_on, allow_failure=allow_failure,
                      pass_results=pass_results, key=key, priority=priority,
                      expires_s=expires_s)


def build_spec(func: str | Callable[..., Any], args: Sequence[Any] = (),
               kwargs: dict[str, Any] | None = None, *, job_id: str | None = None,
               queue: str = DEFAULT_QUEUE, timeout_s: float | None = None,
               max_retries: int | None = None, delay_s: float | None = None,
               run_at: float | None = None, depends_on: Sequence[Any] | None = None,
               allow_failure: bool = False, pass_results: bool = False,
               key: str | None = None, priority: int = 0,
               expires_s: float | None = None) -> JobSpec:
    """A JobSpec for ``func(*args, **kwargs)``, for ``enqueue_spec`` or ``enqueue_many``.

    ``depends_on`` names parents by id, Job handle or JobSpec (one earlier in the same
    ``enqueue_many`` call counts: requests are read in order).

    Raises:
        JobSpecError: ``func`` is not importable by path, or delay_s / run_at are bad.
    """
    return JobSpec(id=job_id or new_job_id(), func=func_path(func), args=list(args),
                   kwargs=dict(kwargs or {}), queue=queue, timeout_s=timeout_s,
                   max_retries=max_retries, run_at_ms=run_at_ms(delay_s, run_at),
                   depends_on=parent_ids(depends_on), allow_failure=allow_failure,
                   pass_results=pass_results, key=key, priority=priority,
                   expires_s=expires_s)


def func_path(func: str | Callable[..., Any]) -> str:
    """``"module:qualname"`` for a callable; strings pass through."""
    if isinstance(func, str):
        return func
    module, name = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    if not module or not name or "<" in name:
        raise JobSpecError(f"{func!r} is not an importable module-level function")
    return f"{module}:{name}"


def run_at_ms(delay_s: float | None, run_at: float | None,
              names: tuple[str, str] = ("delay_s", "run_at")) -> int:
    """Epoch milliseconds a job may start at (0: at once), from a delay or a time.

    ``names`` are what the caller calls the two options, for the error message.

    Raises:
        JobSpecError: both were given, or the delay is negative.
    """
    if delay_s is not None and run_at is not None:
        raise JobSpecError(f"give {names[0]} or {names[1]}, not both")
    if delay_s is not None:
        if delay_s < 0:
            raise JobSpecError(f"{names[0]} must be >= 0, got {delay_s}")
        return int((time.time() + delay_s) * 1000) if delay_s else 0
    if run_at is not None:
        return int(run_at * 1000)
    return 0


def checked_wire(spec: JobSpec | dict[str, Any]) -> dict[str, Any]:
    """The wire form of a JobSpec, a wire dict or a job-file entry, checked as the controller
    will check it.

    Raises:
        JobSpecError: the job is invalid, or its arguments are not JSON.
    """
    entry = isinstance(spec, dict) and "f" not in spec  # a job-file entry, not the wire form
    # An entry is checked as it becomes a wire form; from Python, a field may still not encode.
    wire = (file_entry_wire(spec) if entry
            else spec.to_wire() if isinstance(spec, JobSpec) else spec)
    try:
        orjson.dumps(wire)
    except TypeError as exc:
        raise JobSpecError(f"job {wire.get('id')}: arguments must be JSON: {exc}") from None
    if not entry:
        validate_spec(wire)
    return wire


def unique_ids(ids: Iterable[str]) -> None:
    """Raise JobSpecError naming the first id that appears twice."""
    seen: set[str] = set()
    for job_id in ids:
        if job_id in seen:
            raise JobSpecError(f"job id {job_id!r} appears more than once")
        seen.add(job_id)
