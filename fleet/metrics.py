"""Prometheus metrics of the controller, served with ``/healthz`` on one port.

Counters are driven by the events the controller commits (one place sees every change), so
they agree with the log; gauges are set from the table, the WAL and worker heartbeats each
second. Worker-side figures arrive in heartbeats, so one scrape target sees the whole fleet.

No ``*_created`` series (prometheus-client's default for counters and histograms: every one
doubled for a figure Prometheus derives itself); the process's own ``process_*`` series are
in the same registry. ``fleet_snapshot_age_seconds`` has no sample until a snapshot is known
(one this controller took, or the one recovery loaded): an age of 0 would read "just taken".
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .errors import ConfigError
from .state import STATES, JobTable
from .state import events as ev

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                    30, 60, 300, 1800)
_FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

WORKER_FORGET_S = 3600.0

# Process-wide in prometheus-client: it has no per-registry switch (and no annotations).
disable_created_metrics()  # type: ignore[no-untyped-call, unused-ignore]


class Metrics:
    """Every fleet_* series, in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        jobs = "Jobs {} (by queue)"
        self.enqueued = Counter("fleet_jobs_enqueued_total", jobs.format("accepted"), ["queue"],
                                registry=r)
        self.dispatched = Counter("fleet_jobs_dispatched_total", jobs.format("leased"),
                                  ["queue"], registry=r)
        self.completed = Counter("fleet_jobs_completed_total", jobs.format("completed"),
                                 ["queue"], registry=r)
        self.failed = Counter("fleet_jobs_failed_total", "Failed attempts (by queue)",
                              ["queue"], registry=r)
        self.retried = Counter("fleet_jobs_retried_total",
                               "Failed attempts scheduled to run again (by queue)", ["queue"],
                               registry=r)
        self.dead = Counter("fleet_jobs_dead_total", jobs.format("moved to dead letters"),
                            ["queue"], registry=r)
        self.expired = Counter("fleet_jobs_expired_total", "Leases that ran out (by queue)",
                               ["queue"], registry=r)
        self.cancelled = Counter("fleet_jobs_cancelled_total", jobs.format("cancelled"),
                                 ["queue"], registry=r)
        self.stale_acks = Counter("fleet_stale_acks_total", "Acks ignored by (id, attempt) "
                                  "fencing", registry=r)
        self.malformed = Counter("fleet_malformed_messages_total",
                                 "Messages read from Redis that were dropped", ["source"],
                                 registry=r)
        self.rejected = Counter("fleet_jobs_rejected_total", "Jobs refused at intake",
                                registry=r)
        self.rejected_signatures = Counter(
            "fleet_rejected_signatures_total", "Messages refused for a missing, wrong, stale or "
            "replayed seal (by source)", ["source"], registry=r)
        self.depth = Gauge("fleet_jobs", "Jobs in the table by state and queue",
                           ["state", "queue"], registry=r)
        self.run_time = BatchHistogram("fleet_job_run_seconds", "Job run time (by queue)",
                                       _LATENCY_BUCKETS, r)
        self.wait_time = BatchHistogram("fleet_job_wait_seconds", "Enqueue to start (by queue)",
                                        _LATENCY_BUCKETS, r)
        self.limit = Gauge("fleet_queue_limit", "A queue's limit by kind (concurrency and "
                           "per_key: jobs; rate: dispatches a second)", ["queue", "kind"],
                           registry=r)
        self.held_back = Gauge("fleet_jobs_held_back", "Pending jobs a limit holds back now, "
                               "by queue and kind of limit", ["queue", "kind"], registry=r)
        self.expired_unstarted = Counter(
            "fleet_jobs_expired_unstarted_total", jobs.format("cancelled unstarted past their "
                                                              "expiry"), ["queue"], registry=r)
        self._children: dict[tuple[int, str], Any] = {}
        # worker id: (done, failed, monotonic seconds) as last seen
        self._worker_counts: dict[str, tuple[int, int, float]] = {}
        self._init_system(r)
        ProcessCollector(registry=r)

    def _init_system(self, r: CollectorRegistry) -> None:
        self.fsync = Histogram("fleet_wal_fsync_seconds", "WAL fsync time",
                               buckets=_FSYNC_BUCKETS, registry=r)
        self.wal_bytes = Gauge("fleet_wal_bytes", "Bytes in WAL segments", registry=r)
        self.wal_records = Counter("fleet_wal_records_total", "Records appended", registry=r)
        self.disk_full = Gauge("fleet_wal_disk_full", "1 while appends fail for lack of space",
                               registry=r)
        self.snapshot_duration = Gauge("fleet_snapshot_duration_seconds",
                                       "Duration of the last snapshot", registry=r)
        self.snapshot_pause = Gauge("fleet_snapshot_pause_seconds",
                                    "How long the last snapshot stalled the loop", registry=r)
        self.snapshot_age = OptionalGauge("fleet_snapshot_age_seconds",
                                          "Age of the last snapshot (no sample: none yet)", r)
        self.recovery = Gauge("fleet_recovery_seconds", "Time the last start spent recovering",
                              registry=r)
        self.redis_losses = Counter("fleet_redis_data_loss_total",
                                    "Times Redis was found to have lost its data", registry=r)
        self.workers = Gauge("fleet_workers", "Worker supervisors alive", registry=r)
        self.executors = Gauge("fleet_executors", "Executor processes alive", registry=r)
        self.busy = Gauge("fleet_executors_busy", "Executors running a job", registry=r)
        self.worker_done = Counter("fleet_worker_jobs_done", "Jobs workers finished (ok or "
                                   "failed), as their heartbeats report", registry=r)
        self.worker_failed = Counter("fleet_worker_jobs_failed", "Jobs that failed on workers, "
                                     "as their heartbeats report", registry=r)
        self.epoch = Gauge("fleet_controller_epoch", "Fencing epoch of this controller",
                           registry=r)
        self.up_since = Gauge("fleet_controller_start_time_seconds", "Controller start time",
                              registry=r)

    def observe_batch(self, batch: list[ev.Record], table: JobTable) -> None:
        """Count the committed records of one batch by type and queue.

        Counts are summed per (counter, queue) and times collected per queue first, then
        added once each: ``labels().inc()`` and ``observe()`` cost more than the rest of a
        record's bookkeeping, and a batch holds thousands of records.
        """
        counts: dict[tuple[int | str, str], int] = {}
        times: dict[str, tuple[list[float], list[float]]] = {}
        for record in batch:
            kind = record[0]
            if kind == ev.ENQUEUED or kind == ev.ENQUEUED_AFTER:
                key: tuple[int | str, str] = (ev.ENQUEUED, record[2])
                counts[key] = counts.get(key, 0) + 1
                continue
            if kind not in ev.JOB_TYPES:
                continue
            job = table.get(record[1])
            if job is None:
                continue
            queue = job.queue
            key = (kind, queue)
            counts[key] = counts.get(key, 0) + 1
            if kind == ev.CANCELLED and len(record) > 3 and record[3] == "expired":
                key = ("expired_unstarted", queue)
                counts[key] = counts.get(key, 0) + 1
            if kind == ev.ACKED:
                _collect_times(record[6], record[7], record[2], job.enqueued_ms, times, queue)
            elif kind == ev.FAILED or kind == ev.EXPIRED:
                key = ("dead" if job.state == "dead" else "retried", queue)
                counts[key] = counts.get(key, 0) + 1
                if kind == ev.FAILED:
                    _collect_times(record[8], record[9], record[2], None, times, queue)
        by_kind = self._by_kind
        for (kind, queue), count in counts.items():
            counter = by_kind.get(kind)
            if counter is not None:
                self._child(counter, queue).inc(count)
        for queue, (run_s, wait_s) in times.items():
            self.run_time.observe_many(queue, run_s)
            self.wait_time.observe_many(queue, wait_s)

    @property
    def _by_kind(self) -> dict[int | str, Counter]:
        return {ev.ENQUEUED: self.enqueued, ev.DISPATCHED: self.dispatched,
                ev.ACKED: self.completed, ev.FAILED: self.failed, ev.EXPIRED: self.expired,
                ev.CANCELLED: self.cancelled, "dead": self.dead, "retried": self.retried,
                "expired_unstarted": self.expired_unstarted}

    def _child(self, metric: Any, queue: str) -> Any:
        """``metric.labels(queue)``, cached: the lookup is slow and queues are few."""
        key = (id(metric), queue)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(queue)
        return child

    def set_depths(self, table: JobTable) -> None:
        for queue, counts in table.queue_counts.items():
            for state in STATES:
                self.depth.labels(state, queue).set(counts[state])

    def set_limits(self, limits: dict[str, dict[str, Any]],
                   held: dict[str, dict[str, int]]) -> None:
        """The queues' limits and what each holds back (a cleared limit reads 0)."""
        for queue, kinds in held.items():
            queue_limits = limits.get(queue, {})
            for kind, count in kinds.items():
                value = queue_limits.get(kind, 0)
                self.limit.labels(queue, kind).set(
                    value[0] / value[1] if kind == "rate" and value else value)
                self.held_back.labels(queue, kind).set(count)

    def set_fleet(self, beats: list[dict[str, Any]]) -> None:
        self.workers.set(len(beats))
        self.executors.set(sum(int(b.get("executors") or 0) for b in beats))
        self.busy.set(sum(int(b.get("busy") or 0) for b in beats))
        self._count_worker_jobs(beats)

    def _count_worker_jobs(self, beats: list[dict[str, Any]]) -> None:
        """Add what each worker finished since its last heartbeat to the fleet-wide counters,
        so that they only grow: a worker that exits keeps its share, and one that restarts
        under the same id (its counts fall back) counts from zero again."""
        now_s = time.monotonic()
        counts = self._worker_counts
        for beat in beats:
            worker_id = str(beat.get("id"))
            last_done, last_failed, _ = counts.get(worker_id, (0, 0, now_s))
            done = _count(beat.get("done"), last_done)
            failed = _count(beat.get("failed"), last_failed)
            # A count lower than last time started again from zero (a restart).
            self.worker_done.inc(done - last_done if done >= last_done else done)
            self.worker_failed.inc(failed - last_failed if failed >= last_failed else failed)
            counts[worker_id] = (done, failed, now_s)
        # A worker missing from a read or two (a stall past its heartbeat's expiry) must not
        # be counted again from zero when it is back: ids are forgotten only after an hour.
        if len(counts) > len(beats):
            self._worker_counts = {worker_id: entry for worker_id, entry in counts.items()
                                   if now_s - entry[2] < WORKER_FORGET_S}


def _count(value: Any, last: int) -> int:
    """A heartbeat's count; ``last`` (no change) if it is not a non-negative integer."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else last


class OptionalGauge(Collector):
    """A gauge with no sample until it is first set (and after ``clear``)."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.value: float | None = None
        registry.register(self)

    def set(self, value: float) -> None:
        self.value = value

    def clear(self) -> None:
        self.value = None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation)
        value = self.value
        if value is not None:
            family.add_metric([], value)
        yield family


def _collect_times(started: int | None, finished: int | None, attempt: int,
                   enqueued_ms: int | None, times: dict[str, tuple[list[float], list[float]]],
                   queue: str) -> None:
    """Add an attempt's run time (and a first attempt's wait) to ``times[queue]``."""
    if started and finished:
        run_s, wait_s = times.get(queue) or times.setdefault(queue, ([], []))
        run_s.append(max(0, finished - started) / 1000)
        if enqueued_ms and attempt == 1:
            wait_s.append(max(0, started - enqueued_ms) / 1000)


class BatchHistogram(Collector):
    """A histogram labelled by queue that takes a batch of observations in one call.

    Exposed exactly like ``prometheus_client.Histogram`` (``_bucket``, ``_sum``, ``_count``
    by ``queue``); one lock and one bisect per value instead of a ``labels()`` lookup and a
    lock per value.
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = [float(b) for b in buckets] + [math.inf]
        self._series: dict[str, tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, queue: str, values: list[float]) -> None:
        if not values:
            return
        bounds = self.bounds
        with self._lock:
            counts, total = self._series.get(queue) or self._series.setdefault(
                queue, ([0] * len(bounds), [0.0]))
            for value in values:
                counts[bisect.bisect_left(bounds, value)] += 1
            total[0] += sum(values)

    def observe(self, queue: str, value: float) -> None:
        self.observe_many(queue, [value])

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=["queue"])

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["queue"])
        with self._lock:
            series = [(queue, list(counts), total[0])
                      for queue, (counts, total) in self._series.items()]
        for queue, counts, total in series:
            cumulative, buckets = 0, []
            for bound, count in zip(self.bounds, counts, strict=True):
                cumulative += count
                # prometheus-client leaves floatToGoString unannotated.
                bound_text: str = floatToGoString(bound)  # type: ignore[no-untyped-call, unused-ignore]
                buckets.append((bound_text, cumulative))
            family.add_metric([queue], buckets, sum_value=total)
        yield family


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def serve(metrics: Metrics, host: str, port: int, healthy: Callable[[], bool]
          ) -> WSGIServer:
    """Serve ``/metrics`` and ``/healthz`` from a daemon thread; returns the server.

    Raises:
        ConfigError: the address cannot be bound (port taken, no such address, no right).
    """
    prometheus_app = make_wsgi_app(metrics.registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            ok = healthy()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"unhealthy\n"]
        body: list[bytes] = prometheus_app(environ, start_response)  # untyped upstream
        return body

    try:
        server = make_server(host, port, app, handler_class=_QuietHandler)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {reason} (another fleet "
                          "controller or process may use it; choose another with "
                          "--metrics-port / FLEET_METRICS_PORT, 0 turns it off)") from None
    thread = threading.Thread(target=server.serve_forever, name="fleet-metrics", daemon=True)
    thread.start()
    metrics.up_since.set(time.time())
    return server
