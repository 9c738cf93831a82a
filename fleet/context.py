"""``fleet.current_job()``: what a running job knows about itself.

Set by the worker's runner around each call, in a ``contextvars.ContextVar``: a coroutine
job run by ``asyncio.run`` (which copies the context) and the tasks it starts see the same
value; outside a job it is None.

``progress(fraction, message)`` checks its arguments and hands them to whoever ran the job: a
worker's executor keeps only the latest value and its supervisor's heartbeat carries it to the
controller (docs/protocol.md §5, "Progress"); ``fleet.testing.InlineClient`` checks them the same
way and keeps nothing. It is never logged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, ClassVar

MAX_PROGRESS_MESSAGE_CHARS = 200  # a longer progress message is cut to this


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
    # Who takes the reports; not a field, so that ``dataclasses.asdict`` stays JSON.
    _on_progress: ClassVar[Any] = None  # Any: a callable class attribute reads as a method

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the job has got: ``fraction`` from 0.0 to 1.0, and a short
        ``message`` (cut to 200 characters).

        Cheap enough for a tight loop: it stores the latest value, and the worker's heartbeat
        sends whatever is latest at its own pace (about once a second). Not logged: the
        controller keeps the latest value of a running attempt in memory, for ``fleet job``.

        Raises:
            ValueError: ``fraction`` is not a finite number from 0 to 1, or ``message`` is
                not a string.
        """
        fraction, message = checked_progress(fraction, message)
        if self._on_progress is not None:
            self._on_progress(fraction, message)

    def reporting_to(self, on_progress: Callable[[float, str], None]) -> CurrentJob:
        """This job, with its progress reports handed to ``on_progress`` (for the worker)."""
        object.__setattr__(self, "_on_progress", on_progress)
        return self


_current: ContextVar[CurrentJob | None] = ContextVar("fleet_current_job", default=None)


def current_job() -> CurrentJob | None:
    """The job this code runs inside (sync or async), or None outside one."""
    return _current.get()


def checked_progress(fraction: Any, message: Any) -> tuple[float, str]:
    """``(fraction, message)`` as a progress report keeps them (a float, a message of at most
    ``MAX_PROGRESS_MESSAGE_CHARS``).

    Raises:
        ValueError: ``fraction`` is not a finite real number from 0 to 1 (a bool is not one),
            or ``message`` is not a string.
    """
    kind = type(fraction)
    if kind is not float and kind is not int:  # the common cases, without an ABC check
        if isinstance(fraction, bool) or not isinstance(fraction, Real):
            raise ValueError(f"progress fraction must be a number from 0.0 to 1.0, got "
                             f"{kind.__name__}")
        fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0:  # NaN compares false: refused here too
        shown = "NaN" if math.isnan(fraction) else repr(fraction)
        raise ValueError(f"progress fraction must be from 0.0 to 1.0, got {shown}")
    if type(message) is not str:
        if not isinstance(message, str):
            raise ValueError(f"progress message must be a string, got "
                             f"{type(message).__name__}")
        message = str(message)
    if len(message) > MAX_PROGRESS_MESSAGE_CHARS:
        message = message[:MAX_PROGRESS_MESSAGE_CHARS]
    return float(fraction), message
