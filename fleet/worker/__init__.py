"""The worker: a supervisor (pool.py) and N executor processes (executor.py).

An executor pops dispatch messages from ``{ns}:ready:<queue>`` in priority order, runs each
(runner.py: allow-list, timeout, JSON result) and pushes its ack on ``{ns}:acks``; the
supervisor heartbeats, enforces hard timeouts, replaces dead executors, handles cancels and
shutdown. The wire formats are docs/protocol.md §2-§5 and §8; docs/worker.md tells the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..config import Settings
from ..errors import ConfigError

__all__ = ["run_worker"]


def run_worker(settings: Settings, import_paths: Iterable[str] = (), burst: bool = False,
               namespaces: Sequence[str] = ()) -> int:
    """Run a worker until SIGTERM / SIGINT (or, with ``burst``, until its queues stay empty).
    Returns the exit code (0 drained, 130 cold stop).

    With ``namespaces``, one supervisor per namespace shares the executors (shards.py).

    ``import_paths`` go to the front of ``sys.path`` (inherited by the executors) before any
    job's module is imported.

    Raises:
        ConfigError: no queue to consume, or fewer executors than namespaces.
    """
    # Imported here: importing fleet.worker should not pay for rq.
    from .imports import add_import_paths
    from .pool import Supervisor

    if not settings.queues:
        raise ConfigError("queues: give at least one queue to consume")
    add_import_paths(import_paths)
    if namespaces:
        from .shards import run_namespaces

        return run_namespaces(settings, namespaces, burst)
    return Supervisor(settings, burst=burst).run()
