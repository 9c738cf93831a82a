"""``fleet.current_job()``: what a running job knows about itself.

Set by the worker's runner around each call, in a ``contextvars.ContextVar``: a coroutine
job run by ``asyncio.run`` (which copies the context) and the tasks it starts see the same
value; outside a job it is None.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CurrentJob:
    """The job being run.

    ``enqueued_ms`` and ``deadline_ms`` (when its soft timeout strikes) are epoch
    milliseconds; ``parent_results`` maps each completed parent's id to its result, and is
    empty unless the job was enqueued with ``pass_results=True`` (docs/workflows.md).
    """

    id: str
    attempt: int
    queue: str
    enqueued_ms: int | None
    deadline_ms: int | None
    parent_results: dict[str, Any] = field(default_factory=dict)


_current: ContextVar[CurrentJob | None] = ContextVar("fleet_current_job", default=None)


def current_job() -> CurrentJob | None:
    """The job this code runs inside (sync or async), or None outside one."""
    return _current.get()
