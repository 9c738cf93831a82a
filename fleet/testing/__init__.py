"""Running fleet as local processes: the harness behind the demo, the tests and the benchmark.

For users' own test suites, ``fleet.testing.InlineClient`` (``inline.py``) is fleet.Client's
API with every job run synchronously at enqueue time: no Redis, controller or worker.
"""

from __future__ import annotations

from typing import Any

__all__ = ["InlineClient"]


def __getattr__(name: str) -> Any:
    # Lazy, so that the process harness (cluster.py) does not import the worker's runner.
    if name == "InlineClient":
        from .inline import InlineClient

        return InlineClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
