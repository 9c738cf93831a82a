"""What the controller loop does on its own cadence, after a step's write.

In this order, each when its time comes (``Housekeeping.run``):

1. every ``Timeline.CHECK_EVERY_MS``: advance the generation marker, to notice a Redis that
   went back in time (heal.py), and look at the master's address, to notice a failover
   (failover.py);
2. every heartbeat period: read the workers' heartbeats (liveness.py; leases are extended and
   the healer told what runs), set the fleet and depth gauges, carry the parts' drop counts
   into their counters, take a sample of the table's totals (the rates ``fleet status``
   shows) and note a step of the wall clock;
3. every ``COMPACT_EVERY_MS``: forget the finished jobs past ``retention_s`` (one COMPACTED
   record) and age the heap (``_age_heap``);
4. every step: start a snapshot when enough records or time have passed, or see one land and
   prune what it covers.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections import deque
from collections.abc import Callable

from ..clock import wall_of
from ..config import Settings
from ..metrics import Metrics
from ..state import events as ev
from ..transport import ControllerWire
from ..wal import Files, OpenLog, SnapshotTaker, prune_snapshots
from .failover import MasterWatch
from .gate import Gate
from .heal import Healer, Timeline
from .journal import Journal
from .limiter import Buckets, held_back
from .liveness import Liveness
from .reconcile import Reconciler
from .retention import Retention

log = logging.getLogger("fleet.controller")

COMPACT_EVERY_MS = 1000
CLOCK_STEP_LOG_MS = 1000
SAMPLES_KEPT_MS = 60_000
RATES = ("enqueued", "completed", "failed", "dead")


class Samples:
    """The table's totals, one sample a heartbeat period over the last minute."""

    def __init__(self, kept_ms: int = SAMPLES_KEPT_MS) -> None:
        self.kept_ms = kept_ms
        self._samples: deque[tuple[int, dict[str, int]]] = deque()

    def add(self, now_ms: int, totals: dict[str, int]) -> None:
        self._samples.append((now_ms, dict(totals)))
        while self._samples and self._samples[0][0] < now_ms - self.kept_ms:
            self._samples.popleft()

    def rates_per_s(self) -> dict[str, float]:
        """Jobs enqueued, completed, failed and dead per second over the samples kept
        (empty until there are two)."""
        if len(self._samples) < 2:
            return {}
        (t0, first), (t1, last) = self._samples[0], self._samples[-1]
        seconds = max((t1 - t0) / 1000, 0.001)
        return {name: round((last[name] - first[name]) / seconds, 2) for name in RATES}


class Snapshots:
    """When to take a snapshot, and what to prune once one has landed."""

    def __init__(self, settings: Settings, log_: OpenLog, metrics: Metrics,
                 files: Files | None = None, fork: bool = True) -> None:
        self.settings = settings
        lock = log_.lock  # a forked child must not hold the data dir's lock
        self.taker = taker = SnapshotTaker(settings.data_dir, files, fork=fork,
                                           in_child=lock.release if lock is not None else None)
        self.log = log_
        self.metrics = metrics
        self._seq = taker.last_seq = log_.report.snapshot_seq
        self._started_s = time.monotonic()
        self._recovered_s = _written_at(log_.report.snapshot)

    def last_finished_s(self) -> float | None:
        """When the last snapshot was written (wall clock); before this controller takes one,
        the snapshot recovery loaded is the last. None: there is none."""
        return self.taker.last_finished or self._recovered_s

    def tick(self, journal: Journal) -> None:
        """Poll a running snapshot, or start one if it is due and nothing waits to commit."""
        taker = self.taker
        if taker.running is not None:
            if taker.poll():
                self._landed()
            return
        table = journal.table
        due = (table.last_seq - self._seq >= self.settings.snapshot_every_records
               or (time.monotonic() - self._started_s >= self.settings.snapshot_interval_s
                   and table.last_seq > self._seq))
        if due and not journal.pending:
            self._started_s = time.monotonic()
            self._seq = table.last_seq
            taker.start(table)
            self.metrics.snapshot_pause.set(taker.last_pause_s)
            if taker.running is None:
                self._landed()

    def _landed(self) -> None:
        taker = self.taker
        oldest_kept = prune_snapshots(self.settings.data_dir, self.log.writer.files)
        if oldest_kept is not None:
            self.log.writer.remove_segments_through(oldest_kept)
        self.metrics.snapshot_duration.set(taker.last_duration_s)
        log.info("snapshot at seq %d written in %.0f ms (loop paused %.1f ms)", taker.last_seq,
                 taker.last_duration_s * 1000, taker.last_pause_s * 1000)


class Housekeeping:
    """Runs the controller's periodic work (module docstring) against the parts it is given.

    ``commit`` commits what the journal holds (the loop's, waiting out a full disk);
    ``heal_again`` starts a heal after Redis lost writes; ``drop_counts`` returns the
    parts' counts of stale and malformed messages, by counter name.
    """

    def __init__(self, settings: Settings, clock: Callable[[], int], wire: ControllerWire,
                 journal: Journal, log_: OpenLog, metrics: Metrics, gate: Gate,
                 liveness: Liveness, reconciler: Reconciler, healer: Healer,
                 retention: Retention, snapshots: Snapshots, commit: Callable[[], bool],
                 heal_again: Callable[[int], None],
                 drop_counts: Callable[[], dict[str, int]]) -> None:
        self.settings = settings
        self.clock = clock
        self.wire = wire
        self.journal = journal
        self.log = log_
        self.metrics = metrics
        self.gate = gate
        self.liveness = liveness
        self.reconciler = reconciler
        self.healer = healer
        self.retention = retention
        self.snapshots = snapshots
        self.commit = commit
        self.heal_again = heal_again
        self.drop_counts = drop_counts
        self.timeline = Timeline()
        self.master_watch = MasterWatch()
        self.samples = Samples()
        self.buckets = Buckets()  # the dispatcher's rate buckets, for the held-back gauge
        self._counted: dict[str, int] = {}
        self._next_beat_ms = self._next_compact_ms = self._next_timeline_ms = 0

    def run(self, now: int) -> None:
        """Whatever is due at ``now``, in the order of the module docstring."""
        if now >= self._next_timeline_ms:
            self._next_timeline_ms = now + Timeline.CHECK_EVERY_MS
            self.check_timeline(now)
        if now >= self._next_beat_ms:
            self._next_beat_ms = now + int(self.settings.heartbeat_s * 1000)
            self.read_heartbeats(now)
            self.sample(now)
            self.watch_clock()
        if now >= self._next_compact_ms:
            self._next_compact_ms = now + COMPACT_EVERY_MS
            self.compact(now)
            _age_heap()
        self.snapshots.tick(self.journal)

    def check_timeline(self, now: int) -> None:
        # Both ticks run: each must remember what it saw, even when the other found a change.
        moved, problem = self.master_watch.tick(self.wire), self.timeline.tick(self.wire)
        problem = moved or problem
        if problem is not None:
            log.warning("%s: healing, and purging stale messages", problem)
            self.heal_again(now)

    def read_heartbeats(self, now: int) -> None:
        beats = self.liveness.parse_beats(self.gate.beats(self.wire.read_workers(),
                                                          wall_of(self.clock)()))
        self.liveness.read(beats)
        self.healer.on_reported(self.reconciler.on_heartbeats(beats, now))
        self.metrics.set_fleet(beats)
        self.metrics.set_depths(self.journal.table)
        self.metrics.set_limits(self.journal.table.limits,
                                held_back(self.journal.table, self.buckets))
        self.metrics.wal_bytes.set(self.log.writer.total_bytes)
        self.sync_counters()

    def sync_counters(self) -> None:
        """Carry the drops and refusals the parts count into their Prometheus counters."""
        counts = self.drop_counts()
        for name, value in counts.items():
            delta = value - self._counted.get(name, 0)
            if delta > 0:
                counter = {"stale": self.metrics.stale_acks, "rejected": self.metrics.rejected
                           }.get(name) or self.metrics.malformed.labels(name)
                counter.inc(delta)
        self._counted = counts
        for source, delta in self.gate.take_counts().items():
            self.metrics.rejected_signatures.labels(source).inc(delta)

    def sample(self, now: int) -> None:
        self.samples.add(now, self.journal.table.totals)
        finished_s = self.snapshots.last_finished_s()
        if finished_s:
            self.metrics.snapshot_age.set(time.time() - finished_s)

    def watch_clock(self) -> None:
        getattr(self.clock, "pay_back", lambda _: None)(CLOCK_STEP_LOG_MS)
        step_ms = getattr(self.clock, "new_step_ms", lambda _: None)(CLOCK_STEP_LOG_MS)
        if step_ms is not None:
            log.warning("the wall clock stepped: it is now %+.1f s from the run clock, which "
                        "leases, due times and retention keep to",
                        step_ms / 1000)

    def compact(self, now: int) -> None:
        ids = self.retention.due(now, 50_000)
        if ids:
            self.journal.record(ev.compacted(ids))
            self.commit()


def _written_at(path: str | None) -> float | None:
    """When the snapshot recovery loaded was written (None: there was none)."""
    try:
        return os.path.getmtime(path) if path else None
    except OSError:
        return None


def _age_heap() -> None:
    """Collect what the last second left behind, then freeze the survivors (once a second).

    Jobs live for minutes to hours. Left to the collector, a table of a million jobs is walked
    whole each time the heap grows by a quarter: a pause of about a second, over and over
    while jobs pour in. Frozen objects are never walked, so every collection now sees only a
    second's worth of objects. The price: a reference cycle among objects that lived past a
    freeze is never reclaimed, and the controller's long-lived objects (jobs, connections,
    metrics) form none that die.
    """
    gc.collect()
    gc.freeze()
