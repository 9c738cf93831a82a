"""The dispatcher's ready window: sized to the workers, and to the rate for short jobs."""

from __future__ import annotations

from fleet.config import Settings
from fleet.controller.dispatch import MAX_WINDOW, MIN_WINDOW, WINDOW_PER_EXECUTOR, Dispatcher


def dispatcher(**settings) -> Dispatcher:
    return Dispatcher(journal=None, settings=Settings(**settings))


def test_window_is_sized_to_the_workers_when_jobs_are_slow():
    """With no measured rate the window is what it always was: 8 per executor, at least 64."""
    d = dispatcher()
    assert d.window(0, "default") == MIN_WINDOW
    assert d.window(20, "default") == 20 * WINDOW_PER_EXECUTOR


def test_window_grows_with_the_dispatch_rate_up_to_the_cap():
    """A queue dispatching thousands a second gets about 50 ms of work, never past the cap."""
    d = dispatcher()
    d.dispatched_by_queue = {"fast": 5_000, "slow": 1}
    d._measure(1_000)
    assert d.rate_per_s["fast"] == 5_000
    assert d.window(8, "fast") == 250
    assert d.window(8, "slow") == MIN_WINDOW
    d.dispatched_by_queue["fast"] += 100_000
    d._measure(2_000)
    assert d.window(8, "fast") == MAX_WINDOW


def test_a_configured_window_wins():
    """ready_window set by the operator is used as it is."""
    d = dispatcher(ready_window=10)
    d.dispatched_by_queue = {"fast": 100_000}
    d._measure(1_000)
    assert d.window(8, "fast") == 10
