"""benchmarks/benchlib.py: the arithmetic every benchmark's figures go through."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from benchlib import Drain, percentile  # noqa: E402


def test_percentile_is_the_nearest_rank_without_interpolation():
    """p50 of 1..10 is the 6th value, p99 and p100 the last; a single value is every pct."""
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 50) == 6.0
    assert percentile(values, 99) == 10.0
    assert percentile(values, 100) == 10.0
    assert percentile([3.5], 99) == 3.5


def test_drain_rates_divide_the_jobs_by_their_own_interval():
    """The enqueue rate uses the enqueue time, the drain rate the time to the signal."""
    drain = Drain(n=1000, enqueue_s=0.25, total_s=2.0)
    assert (drain.enqueue_rate, drain.drain_rate) == (4000.0, 500.0)
    assert drain.settled_s is None
