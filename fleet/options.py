"""Enqueue options versus function arguments: a keyword meant as an option must never reach
the function by mistake.

fleet's own options (``job_id``, ``queue``, ``timeout_s``, ``max_retries``, ``delay_s``,
``run_at``, and ``client`` for a task) act on the job. A keyword that looks like another
queue's option (``countdown``, ``timeout``, ``retries``...) is refused at enqueue unless the
function itself declares a parameter of that name: sent on, it would fail on the worker with a
TypeError and be retried. For a function that takes such a name, pass the arguments explicitly
(``build_spec(func, args, kwargs)`` or ``task.enqueue_with(args, kwargs)``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import JobSpecError

RESERVED = ("job_id", "queue", "timeout_s", "max_retries", "delay_s", "run_at", "depends_on",
            "allow_failure", "pass_results", "key", "priority", "expires_s")

# Other queues' enqueue options, and what fleet calls them.
LOOK_ALIKES = {
    "timeout": "timeout_s", "job_timeout": "timeout_s", "time_limit": "timeout_s",
    "soft_time_limit": "timeout_s", "retries": "max_retries", "max_retry": "max_retries",
    "retry": "max_retries", "countdown": "delay_s", "delay": "delay_s", "eta": "run_at",
    "at": "run_at", "task_id": "job_id", "queue_name": "queue", "routing_key": "queue",
    "expires": "expires_s", "ttl": "expires_s", "expiry": "expires_s",
}


def check_options(func: Any, kwargs: Mapping[str, Any],
                  how: str = "client.enqueue_spec(fleet.build_spec(func, args, kwargs))"
                  ) -> None:
    """Refuse a keyword that looks like an enqueue option the function does not declare.

    ``func`` is a callable or a path (a path's parameters are unknown: every look-alike is
    refused).

    Raises:
        JobSpecError: naming the keyword, what fleet calls the option, and ``how`` to pass
            an argument of that name.
    """
    declared = _declared(func if callable(func) else None)
    for name in kwargs:
        if name in LOOK_ALIKES and name not in declared:
            raise JobSpecError(
                f"{name}= is not an enqueue option of fleet (use {LOOK_ALIKES[name]}=); if "
                f"the function takes an argument named {name!r}, pass it with {how}")


def _declared(fn: Callable[..., Any] | None) -> set[str]:
    """Parameter names ``fn`` declares by name (not those ``**kwargs`` would swallow)."""
    signature = _signature(fn)
    if signature is None:
        return set()
    return {name for name, p in signature.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _signature(fn: Callable[..., Any] | None) -> inspect.Signature | None:
    if fn is None:
        return None
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and extension functions may have none
        return None


def check_call(fn: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """The worker would call ``fn(*args, **kwargs)``: refuse now what fails there anyway
    (a path is not checked: its function is not imported here).

    Raises:
        JobSpecError: the function cannot take these arguments (TypeError's own words).
    """
    signature = _signature(fn if callable(fn) else None)
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        name = getattr(fn, "__qualname__", repr(fn))
        raise JobSpecError(f"{name}() cannot take these arguments: {exc}") from None


def parent_ids(depends_on: Any) -> tuple[str, ...]:
    """``depends_on`` as job ids: each item an id or anything with an ``id`` (a Job handle,
    a JobSpec, a Receipt). None: no parents.

    Raises:
        JobSpecError: it is not a list (or tuple) of ids and handles.
    """
    if depends_on is None:
        return ()
    if isinstance(depends_on, str) or not isinstance(depends_on, Sequence):
        raise JobSpecError("depends_on must be a list of job ids or Job handles, got "
                           f"{type(depends_on).__name__}")
    ids = []
    for parent in depends_on:
        job_id = parent if isinstance(parent, str) else getattr(parent, "id", None)
        if not isinstance(job_id, str):
            raise JobSpecError(f"depends_on holds {type(parent).__name__}, not a job id")
        ids.append(job_id)
    return tuple(ids)
