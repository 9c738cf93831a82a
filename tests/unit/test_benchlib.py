"""benchmarks/benchlib.py: the arithmetic every benchmark's figures go through."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import benchlib  # noqa: E402
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


def _proc_stat(monkeypatch, text: str | None) -> None:
    import builtins
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if path == "/proc/stat":
            if text is None:
                raise OSError("no /proc here")
            import io
            return io.StringIO(text)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)


def test_steal_is_the_stolen_share_of_all_ticks_between_two_readings(monkeypatch):
    # user nice system idle iowait irq softirq steal
    _proc_stat(monkeypatch, "cpu  100 0 50 800 0 0 0 50 0 0\n")
    before = benchlib.cpu_ticks()
    assert before == (1000, 50)
    _proc_stat(monkeypatch, "cpu  200 0 100 1500 0 0 0 200 0 0\n")
    assert benchlib.steal_share(before) == 150 / 1000


def test_steal_reads_as_none_where_proc_stat_is_missing_or_odd(monkeypatch):
    for text in (None, "cpu  x y z\n", "cpu  1 2 3\n"):
        _proc_stat(monkeypatch, text)
        ticks = benchlib.cpu_ticks()
        assert benchlib.steal_share(ticks) == 0.0
