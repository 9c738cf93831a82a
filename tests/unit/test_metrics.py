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


def test_no_created_series_are_exposed():
    """Counters and histograms come without prometheus-client's extra *_created series."""
    metrics = Metrics()
    metrics.enqueued.labels("q").inc()
    metrics.fsync.observe(0.001)
    metrics.run_time.observe("q", 0.1)
    text = generate_latest(metrics.registry).decode()
    assert "fleet_jobs_enqueued_total" in text
    assert "_created" not in text


def test_worker_jobs_done_is_a_counter_that_never_drops():
    """fleet_worker_jobs_done_total adds each worker's progress: a worker that exits keeps
    its share, one missing from a read is not counted twice, one restarted counts anew."""
    metrics = Metrics()
    done = lambda: metrics.registry.get_sample_value("fleet_worker_jobs_done_total")  # noqa: E731
    failed = lambda: metrics.registry.get_sample_value(  # noqa: E731
        "fleet_worker_jobs_failed_total")
    metrics.set_fleet([{"id": "w1", "done": 5, "failed": 1}, {"id": "w2", "done": 3}])
    assert done() == 8 and failed() == 1
    metrics.set_fleet([{"id": "w1", "done": 7, "failed": 1}])  # w2 exited
    assert done() == 10
    metrics.set_fleet([{"id": "w1", "done": 7, "failed": 1}, {"id": "w2", "done": 4}])
    assert done() == 11 and failed() == 1  # w2 back: only its progress is added
    metrics.set_fleet([{"id": "w1", "done": 2, "failed": 0}, {"id": "w2", "done": "x"}])
    assert done() == 13  # w1 restarted under its id; a bad count changes nothing
    metrics.set_fleet([{"id": "w1", "done": 2}, {"id": "w2", "done": 4}])
    assert done() == 13


def test_snapshot_age_has_no_sample_until_a_snapshot_is_known():
    """fleet_snapshot_age_seconds is absent (not 0) before any snapshot, then its age."""
    metrics = Metrics()
    assert metrics.registry.get_sample_value("fleet_snapshot_age_seconds") is None
    samples = generate_latest(metrics.registry).decode().splitlines()
    assert not [line for line in samples if line.startswith("fleet_snapshot_age_seconds")]
    metrics.snapshot_age.set(12.5)
    assert metrics.registry.get_sample_value("fleet_snapshot_age_seconds") == 12.5


def test_process_metrics_are_in_the_controller_registry():
    """process_* series (CPU, memory, open fds, start time) come with the fleet_* ones."""
    value = Metrics().registry.get_sample_value
    assert value("process_resident_memory_bytes") > 0
    assert value("process_start_time_seconds") > 0
    assert value("process_open_fds") > 0


def test_controller_snapshot_age_is_absent_without_a_snapshot_and_counts_a_recovered_one(
        tmp_path):
    """A fresh controller exposes no snapshot age; one that recovered from a snapshot reports
    that snapshot's age (here about an hour: its file is dated back)."""
    import os
    import time

    import fakeredis

    from fleet.config import Settings
    from fleet.controller import Controller

    def controller():
        return Controller(Settings(data_dir=str(tmp_path / "data"), metrics_port=0,
                                   snapshot_every_records=1), redis_client=redis,
                          fork_snapshots=False)

    redis = fakeredis.FakeRedis()
    first = controller()
    first.start(serve_metrics=False)
    first.housekeeping.sample(first.clock())
    age = lambda ctl: ctl.metrics.registry.get_sample_value(  # noqa: E731
        "fleet_snapshot_age_seconds")
    assert age(first) is None
    first.journal.record(ev.enqueued({"id": "a", "q": "q", "f": "m:f", "a": [], "k": {}},
                                     1000, 30.0, 3))
    first.committer.commit()
    first.housekeeping.snapshots.tick(first.journal)
    assert first.snapshots.last_finished
    first.close()
    snapshots = os.listdir(tmp_path / "data" / "snapshots")
    for name in snapshots:
        hour_ago = time.time() - 3600
        os.utime(tmp_path / "data" / "snapshots" / name, (hour_ago, hour_ago))
    second = controller()
    second.housekeeping.sample(second.clock())
    assert 3500 < age(second) < 3700
    second.close()


def test_limits_what_they_hold_back_and_expired_jobs_are_exported():
    from fleet.controller.limiter import Buckets, held_back

    table, metrics = JobTable(), Metrics()
    table.apply(ev.limits("mail", {"concurrency": 1, "rate": [120, 60], "per_key": 2}))
    batch = []
    for i in range(3):
        spec = {"id": f"j{i}", "q": "mail", "f": "m:f", "a": [], "k": {}}
        batch.append(ev.enqueued(spec, 1000, 30.0, 3))
    batch.append(ev.dispatched("j0", 1, 9000, 1001))
    batch.append(ev.cancelled("j1", 1002, "expired"))
    for record in batch:
        table.apply(record)
    metrics.observe_batch(batch, table)
    metrics.set_limits(table.limits, held_back(table, Buckets()))
    text = generate_latest(metrics.registry).decode()
    assert 'fleet_queue_limit{kind="concurrency",queue="mail"} 1.0' in text
    assert 'fleet_queue_limit{kind="rate",queue="mail"} 2.0' in text
    assert 'fleet_jobs_held_back{kind="concurrency",queue="mail"} 1.0' in text
    assert 'fleet_jobs_expired_unstarted_total{queue="mail"} 1.0' in text
