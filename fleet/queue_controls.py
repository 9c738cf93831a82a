"""What a client asks of a queue: pause and resume it, set and clear its limits.

``Client`` inherits it; every method is one control request (docs/protocol.md §7), which a
sharded client sends to every shard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


class QueueControls:
    """The queue commands of a client (``request`` is the client's)."""

    if TYPE_CHECKING:  # defined by Client
        def request(self, command: str, timeout_s: float = 10.0, **args: Any) -> Any: ...

    def pause(self, queue: str) -> dict[str, Any]:
        """Stop dispatching from ``queue`` (running jobs carry on) until ``resume``.

        Returns:
            ``{"paused": queue, "in_use": bool}``; ``in_use`` is False when no job is in
            the queue and no live worker consumes it (a typo, most likely).
        """
        data: dict[str, Any] = self.request("pause", queue=queue)
        return data

    def set_limits(self, queue: str, concurrency: int | None = None, rate: str | None = None,
                   per_key: int | None = None) -> dict[str, Any]:
        """Set some of ``queue``'s fleet-wide limits, the others kept (docs/flow-control.md):
        jobs in flight, dispatches per period (``"10/s"``, ``"100/m"``), jobs in flight per
        key. Returns ``{"queue", "limits", "text", "in_use"}``; ControlError if one is bad."""
        given: dict[str, Any] = {"concurrency": concurrency, "rate": rate, "per_key": per_key}
        return dict(self.request("limit_set", queue=queue,
                                 **{k: v for k, v in given.items() if v is not None}))

    def clear_limits(self, queue: str, *kinds: str) -> dict[str, Any]:
        """Clear ``kinds`` of ``queue``'s limits (none named: all); as ``set_limits``."""
        return dict(self.request("limit_clear", queue=queue, kinds=list(kinds)))

    def limits(self) -> dict[str, Any]:
        """Every queue's limits: ``{queue: {"limits": {...}, "text": "concurrency 2"}}``."""
        return dict(self.request("limit_list"))

    def resume(self, queue: str) -> dict[str, Any]:
        """Dispatch from ``queue`` again; returns ``{"resumed": queue, "in_use": bool}``."""
        data: dict[str, Any] = self.request("resume", queue=queue)
        return data

