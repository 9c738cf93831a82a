"""Controller metrics: batch counting and the batch-fed job-time histograms."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from fleet.metrics import _LATENCY_BUCKETS, BatchHistogram, Metrics
from fleet.state import JobTable
from fleet.state import events as ev


def _samples(registry: CollectorRegistry, name: str) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines()
            if line.startswith(name) and "_created" not in line]


def test_batch_histogram_exposes_what_a_prometheus_histogram_would():
    """Same observations, same _bucket / _count / _sum samples as prometheus_client's own."""
    values = [0.0, 0.0004, 0.001, 0.003, 0.3, 2.5, 7.0, 4000.0]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("t_seconds", "doc", _LATENCY_BUCKETS, ours)
    reference = Histogram("t_seconds", "doc", ["queue"], buckets=_LATENCY_BUCKETS,
                          registry=theirs)
    batch.observe_many("q", values[:5])
    batch.observe("q", values[5])
    batch.observe_many("q", values[6:])
    batch.observe_many("other", [])
    for value in values:
        reference.labels("q").observe(value)
    assert _samples(ours, "t_seconds") == _samples(theirs, "t_seconds")


def test_observe_batch_counts_each_event_once_by_queue():
    """A batch of enqueue / dispatch / ack events moves the counters by its counts."""
    table, metrics = JobTable(), Metrics()
    batch = []
    for i in range(3):
        spec = {"id": f"j{i}", "q": "mail", "f": "m:f", "a": [], "k": {}}
        batch.append(ev.enqueued(spec, 1000, 30.0, 3))
        batch.append(ev.dispatched(f"j{i}", 1, 9000, 1001))
    batch.append(ev.acked("j0", 1, None, {"w": "w", "h": "h", "st": 1002, "ft": 1005}, 1006))
    for seq, record in enumerate(batch, 1):
        assert table.apply(record, seq)
    metrics.observe_batch(batch, table)
    value = metrics.registry.get_sample_value
    assert value("fleet_jobs_enqueued_total", {"queue": "mail"}) == 3
    assert value("fleet_jobs_dispatched_total", {"queue": "mail"}) == 3
    assert value("fleet_jobs_completed_total", {"queue": "mail"}) == 1
    assert value("fleet_job_run_seconds_count", {"queue": "mail"}) == 1
    assert value("fleet_job_wait_seconds_sum", {"queue": "mail"}) == 0.002
