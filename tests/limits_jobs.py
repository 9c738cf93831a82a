"""Job functions for the input-limit tests (workers run them with ``--allow tests.limits_jobs``)."""

from __future__ import annotations

from typing import Any


def blob(size_bytes: int, **ignored: Any) -> str:
    """Return a string of ``size_bytes`` characters (a big result); extra kwargs are ignored."""
    return "x" * size_bytes


def nothing(**ignored: Any) -> None:
    """Ignore the (possibly big) kwargs and return None."""
    return None
