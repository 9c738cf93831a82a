"""Job functions for the dashboard tests (run with ``--allow tests.dashboard_jobs``)."""

from __future__ import annotations

import os
import time


def fail_until(path: str) -> str:
    """Fail until ``path`` exists: dies first, completes once retried after the file is made."""
    if not os.path.exists(path):
        raise RuntimeError(f"<b>not yet</b><script>window.pwned=1</script> {path}")
    return "recovered"


def hostile_result() -> str:
    """Return markup that would run if a page printed it raw."""
    return "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=1</script>"


def sleep_s(seconds: float) -> float:
    """Sleep, then return the seconds slept (a running job to cancel)."""
    time.sleep(seconds)
    return seconds
