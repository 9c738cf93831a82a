"""The controller: one loop that reads Redis, records events, commits, then answers.

Each iteration (``step``):

1. **read** — one pipeline peeks at intake, acks and control requests, the ready-list lengths
   and the controller lease;
2. **decide** — intake → ENQUEUE, acks → ACK/FAIL/RELEASE, control → its events, leases past
   their deadline → EXPIRE, free room in ready lists → DISPATCH; every event is applied to the
   table and queued in the journal;
3. **commit** — one WAL frame and one fsync for the whole batch (group commit);
4. **write** — one pipeline sends receipts, replies and messages and trims what was read;
   when the iteration did work, the same pipeline also does the next iteration's read.

Nothing leaves Redis and nothing is told to anyone before step 3 returned. Heartbeats,
healing, compaction and snapshots run on their own cadence inside the same loop.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import signal
import time
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from ..clock import RunClock
from ..config import Settings
from ..errors import TransportError, WalDiskFullError
from ..journal import Journal
from ..keys import Keys
from ..metrics import Metrics, serve
from ..schedule import load_schedules
from ..state import JobRecord
from ..state import events as ev
from ..transport import ControllerWire, Inbox, Outbox, ReadLimits, connect
from ..wal import SnapshotTaker, WalOptions, open_log, prune_snapshots
from ..wal.identity import load_or_create
from . import control
from .dispatch import Dispatcher
from .fence import LOST, Fence, boot_epoch
from .gate import Gate
from .heal import Healer, Timeline, purge_stale
from .intake import Intake
from .periodic import Scheduler
from .reconcile import Reconciler
from .retention import Retention

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

log = logging.getLogger("fleet.controller")

INTAKE_REQUESTS_PER_STEP = 64
IDLE_WAIT_S = 0.05
# Redis ends a blocking read's timeout only on its own clock tick (10 a second by default), so
# a wait for a due time closer than that is slept here, in slices short enough that intake
# stays prompt: a delayed job starts within a few ms of its time rather than up to 100 ms late.
REDIS_TICK_S = 0.1
DUE_SLICE_S = 0.005
COMPACT_EVERY_MS = 1000
CLOCK_STEP_LOG_MS = 1000


class Controller:
    """The single writer of one namespace."""

    def __init__(self, settings: Settings, redis_client: Any = None, files: Any = None,
                 clock: Any = None, fork_snapshots: bool = True) -> None:
        self.settings = settings
        self.keys = Keys(settings.namespace)
        # Leases, due times and retention follow the run clock, never a wall-clock step; a
        # test may pass any clock of its own (a RunClock over a fake pair to step the wall).
        self.clock = clock if clock is not None else RunClock()
        self.metrics = Metrics()
        self.log = open_log(settings.data_dir, WalOptions(
            fsync=settings.fsync, fsync_interval_ms=settings.fsync_interval_ms,
            segment_bytes=settings.segment_bytes), files=files)
        self.journal = Journal(self.log.table, self.log.writer)
        self.wire = ControllerWire(redis_client or connect(settings.redis_url), self.keys,
                                   ReadLimits(settings.batch_bytes, settings.max_message_bytes))
        self.intake = Intake(self.journal, settings)
        self.gate = Gate(settings, self.clock())
        self.dispatcher = Dispatcher(self.journal, settings)
        self.reconciler = Reconciler(self.journal, settings, random.Random())
        self.healer = Healer(self.journal, int(settings.heartbeat_s * 1000),
                             self.reconciler.witness)
        self.sightings = self.dispatcher.sightings = self.reconciler.witness.sightings
        self.timeline = Timeline()
        schedules = load_schedules(settings.schedule_file) if settings.schedule_file else []
        self.scheduler = Scheduler(self.journal, schedules, settings)
        lock = self.log.lock
        self.snapshots = SnapshotTaker(settings.data_dir, files, fork=fork_snapshots,
                                       in_child=lock.release if lock is not None else None)
        self.fence: Fence | None = None
        self.beats: list[dict[str, Any]] = []
        self._served: set[str] = set()  # queues the live workers consume
        self.executors = 0
        self.stopping = False
        self.started_s = time.monotonic()
        self.last_step_s = time.monotonic()
        self._cancels: list[tuple[str, str]] = []
        self._withdrawn: list[tuple[str, bytes]] = []
        self._inbox: Inbox | None = None  # read along with the last write, for the next step
        self._inbox_ms = 0  # when that read was sent
        self._samples: deque[tuple[int, dict[str, int]]] = deque()
        self._next_beat_ms = self._next_compact_ms = self._next_timeline_ms = 0
        self._snapshot_seq = self.snapshots.last_seq = self.log.report.snapshot_seq
        self._snapshot_started_s = time.monotonic()
        self.retention = Retention(self.journal.table, settings.retention_s, self.clock())
        self._recovered_snapshot_s = _written_at(self.log.report.snapshot)
        self._disk_full_logged = False
        self._counted: dict[str, int] = {}
        self.malformed_control = 0
        self._redis_down_since: float | None = None
        self.metrics_server: WSGIServer | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self, serve_metrics: bool = True, take_over: bool = False) -> None:
        """Claim the namespace (``take_over``: from another data dir), record the boot and
        begin healing. Logs the recovery."""
        report = self.log.report
        log.info("%s", report.summary())
        for refused in report.refused_snapshots:
            log.warning("refused snapshot: %s", refused)
        self.metrics.recovery.set(report.duration_ms / 1000)
        gc.freeze()  # the recovered table is long-lived: keep it out of every collection
        epoch = boot_epoch(self.journal.table.epoch, self.wire)
        self.fence = Fence(self.wire, epoch, self.settings.namespace,
                           load_or_create(self.settings.data_dir), self.settings.data_dir,
                           take_over)
        self.fence.claim()
        if take_over:
            log.warning("took namespace %r over at epoch %d", self.settings.namespace, epoch)
        self.log.writer.guard = self.fence.confirm  # no commit once fenced out
        self.journal.record(ev.booted(epoch, self.clock()))
        self._commit()
        self.metrics.epoch.set(epoch)
        now = self.clock()
        self.reconciler.grant_grace(now)
        self.healer.start(now)
        if serve_metrics and self.settings.metrics_port:
            self.metrics_server = serve(self.metrics, self.settings.metrics_host,
                                        self.settings.metrics_port, self.healthy)
        log.info("controller epoch %d serving namespace %r", epoch, self.settings.namespace)

    def run(self) -> int:
        """Loop until SIGTERM/SIGINT; returns the exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        while not self.stopping:
            try:
                if not self.step():
                    self._idle()
                if self._redis_down_since is not None:
                    self._redis_down_since = None
                    self.reconciler.redis_ok(self.clock())
            except TransportError as exc:
                self._on_transport_error(exc)
        return 0

    def _on_transport_error(self, exc: TransportError) -> None:
        """Redis is unreachable: wait and retry. Whatever this iteration meant to send may be
        lost, so heal afterwards: recorded events stay queued for the next commit, intake and
        acks are read again (answered as duplicate / counted stale) and lost messages are
        found and re-dispatched by the healer."""
        now = time.monotonic()
        if self._redis_down_since is None:
            self._redis_down_since = now
            log.warning("%s; retrying", exc)
        time.sleep(min(2.0, 0.1 + (now - self._redis_down_since) / 5))
        self.healer.start(self.clock())
        self.reconciler.redis_trouble(self.clock())

    def close(self) -> None:
        """Finish a running snapshot, give up the lease and close the log."""
        if self.snapshots.running is not None:
            self.snapshots.poll(block=True)
        if self.fence is not None:
            try:
                self.fence.release()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        self.log.close()

    def healthy(self) -> bool:
        return time.monotonic() - self.last_step_s < 10 and not self.stopping

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        self.stopping = True

    def _idle(self) -> None:
        """Nothing to do: wait for a wake-up from a client or worker, or for the next due
        time of a delayed job or schedule, whichever comes first."""
        due_in_s = self._due_in_s()
        if due_in_s is not None and 0 < due_in_s < REDIS_TICK_S:
            time.sleep(min(due_in_s, DUE_SLICE_S))
            return
        # Past the tick, Redis's timeout is precise enough; already due yet not acted on
        # this step, wait briefly rather than spin.
        wait_s = 0.001 if due_in_s is not None and due_in_s <= 0 else IDLE_WAIT_S
        self._inbox_ms = self.clock()
        self._inbox = self.wire.wait_then_read(
            wait_s, INTAKE_REQUESTS_PER_STEP, self.settings.batch_size,
            list(self.journal.table.queue_counts))

    def _due_in_s(self) -> float | None:
        """Seconds until the next delayed job or schedule is due (≤ 0: due now), or None."""
        dues = [self.journal.table.next_due_ms(), self.scheduler.next_due_ms()]
        due = min((d for d in dues if d is not None), default=None)
        return None if due is None else (due - self.clock()) / 1000

    # -- one iteration ---------------------------------------------------------------------

    def step(self) -> bool:
        """One read → decide → commit → write round. Returns True if it did any work."""
        now = self.clock()
        inbox, self._inbox = self._inbox, None
        read_ms = self._inbox_ms if inbox is not None else now  # when its LLENs were read
        if inbox is None:
            inbox = self.wire.read(INTAKE_REQUESTS_PER_STEP, self.settings.batch_size,
                                   list(self.journal.table.queue_counts))
        self.sightings.observe(inbox.ready_lengths, read_ms)
        if cast(Fence, self.fence).check(inbox.lease) == LOST:  # set by start()
            self._on_redis_lost(now)
        out = Outbox(trim_intake=len(inbox.intake), trim_acks=len(inbox.acks),
                     trim_control=len(inbox.control))
        gate = self.gate  # seals are checked on the raw bytes, before anything parses them
        out.receipts = gate.receipts(self.intake.handle(gate.intake(inbox.intake, now), now), now)
        self.reconciler.handle_acks(gate.acks(inbox.acks, now), now)
        out.replies = gate.replies(control.handle_requests(
            self, gate.control(inbox.control, now), now) + gate.resend_replies(), now)
        lapsed = self._expire_leases(now)
        self.scheduler.fire_due(now)
        self._heal(now, out)
        lengths = {q: inbox.ready_lengths.get(q, 0) for q in self._served_queues()}
        for queue, messages in self.dispatcher.fill(lengths, self.executors, now).items():
            out.messages.setdefault(queue, []).extend(messages)
        out.cancels, self._cancels = self._cancels, []
        out.withdrawn, self._withdrawn = self._withdrawn, []
        self._commit()
        worked = not inbox.empty or bool(out.messages) or bool(lapsed)
        try:
            if worked:
                # More is probably waiting: read it in the same round trip as this write.
                self._inbox_ms = self.clock()
                self._inbox = self.wire.exchange(out, INTAKE_REQUESTS_PER_STEP,
                                                 self.settings.batch_size,
                                                 list(self.journal.table.queue_counts))
            else:
                self.wire.write(out)
        except BaseException:
            self.sightings.not_pushed()
            raise
        self.sightings.pushed()
        self._periodic(now)
        self.last_step_s = time.monotonic()
        return worked

    def _expire_leases(self, now: int) -> int:
        """End lapsed leases; first take their messages out of Redis if still there, so a job
        never sits twice in a ready list (a crash in between is healed like any lost message)."""
        lapsed = self.reconciler.lapsed(now)
        if lapsed:
            # In flight, so dispatched: dispatched_ms is set (here and in _heal).
            removed = self.wire.remove([
                (self.keys.ready(job.queue),
                 self.dispatcher.message(job, job.attempt, cast(int, job.dispatched_ms)))
                for job in lapsed])
            self.reconciler.expire(lapsed, removed, now)
        return len(lapsed)

    def _served_queues(self) -> list[str]:
        """Queues to dispatch into: those a live worker consumes (all, before any worker
        was seen), so a job for a queue nobody serves waits in the table, not in Redis."""
        known = list(self.journal.table.queue_counts)
        return [q for q in known if q in self._served] if self.beats else known

    def _commit(self) -> None:
        batch = self.journal.pending
        while True:
            try:
                self.journal.commit()
                break
            except WalDiskFullError as exc:
                self._wait_for_space(exc)
        if self._disk_full_logged:
            log.warning("disk space is back: accepting work again")
            self._disk_full_logged = False
            self.metrics.disk_full.set(0)
        if batch:
            self.metrics.observe_batch(batch, self.journal.table)
            self.metrics.wal_records.inc(len(batch))
            self.metrics.fsync.observe(self.log.writer.last_fsync_s)

    def _wait_for_space(self, exc: WalDiskFullError) -> None:
        if not self._disk_full_logged:
            log.error("%s: not accepting work until space returns (nothing was acknowledged)",
                      exc)
            self._disk_full_logged = True
            self.metrics.disk_full.set(1)
        time.sleep(0.5)
        if self.fence is not None:
            self.fence.check(self.wire.lease_holder())
        if self.stopping:
            raise exc

    def _on_redis_lost(self, now: int) -> None:
        log.warning("Redis lost its data (the controller key vanished): healing")
        self.metrics.redis_losses.inc()
        self.reconciler.redis_forgot(now)
        self.healer.start(now)

    def _heal(self, now: int, out: Outbox) -> None:
        if self.healer.purge_due:
            self.healer.purge_due = False
            purge_stale(self.wire, self.keys, self.journal.table, self.reconciler.witness.holders)
        candidates = self.healer.candidates(now)
        if candidates is not None:
            in_flight = self.journal.table.in_flight
            probes = [(self.keys.ready(in_flight[i].queue),
                       self.dispatcher.message(in_flight[i], n,
                                               cast(int, in_flight[i].dispatched_ms)))
                      for i, n in candidates]
            present = self.wire.present(probes)
            self.healer.found([c for c, p in zip(candidates, present, strict=True) if not p],
                              now)
        for job_id in self.healer.to_redispatch(now):
            job = self.journal.table.in_flight[job_id]
            out.messages.setdefault(job.queue, []).append(self.dispatcher.lease(job, now))

    def _check_timeline(self, now: int) -> None:
        problem = self.timeline.tick(self.wire)
        if problem is not None:
            log.warning("%s: healing, and purging stale messages", problem)
            self.metrics.redis_losses.inc()
            self.reconciler.redis_forgot(now)
            self.healer.start(now)

    # -- on their own cadence --------------------------------------------------------------

    def _periodic(self, now: int) -> None:
        if now >= self._next_timeline_ms:
            self._next_timeline_ms = now + Timeline.CHECK_EVERY_MS
            self._check_timeline(now)
        if now >= self._next_beat_ms:
            self._next_beat_ms = now + int(self.settings.heartbeat_s * 1000)
            self._read_heartbeats(now)
            self._sample(now)
            self._watch_clock()
        if now >= self._next_compact_ms:
            self._next_compact_ms = now + COMPACT_EVERY_MS
            self._compact(now)
            _age_heap()
        self._snapshot()

    def _read_heartbeats(self, now: int) -> None:
        beats = self.reconciler.parse_beats(self.gate.beats(self.wire.read_workers(), now))
        self.beats = beats
        self._served = {q for beat in beats for q in beat.get("queues") or ()
                        if isinstance(q, str)}
        self.executors = sum(b.get("executors") or 0 for b in beats)
        self.healer.on_reported(self.reconciler.on_heartbeats(beats, now))
        self.metrics.set_fleet(beats)
        self.metrics.set_depths(self.journal.table)
        self.metrics.wal_bytes.set(self.log.writer.total_bytes)
        self._sync_counters()

    def _sync_counters(self) -> None:
        """Carry the drops and refusals the parts count into their Prometheus counters."""
        counts = {"stale": self.reconciler.stale_acks, "rejected": self.intake.counts["rejected"],
                  "intake": self.intake.malformed, "acks": self.reconciler.malformed_acks,
                  "control": self.malformed_control,
                  "heartbeat": self.reconciler.malformed_beats}
        for name, value in counts.items():
            delta = value - self._counted.get(name, 0)
            if delta > 0:
                counter = {"stale": self.metrics.stale_acks, "rejected": self.metrics.rejected
                           }.get(name) or self.metrics.malformed.labels(name)
                counter.inc(delta)
        self._counted = counts
        for source, delta in self.gate.take_counts().items():
            self.metrics.rejected_signatures.labels(source).inc(delta)

    def _watch_clock(self) -> None:
        step_ms = getattr(self.clock, "new_step_ms", lambda _: None)(CLOCK_STEP_LOG_MS)
        if step_ms is not None:
            log.warning("the wall clock stepped: it is now %+.1f s from the run clock, which "
                        "leases, due times and retention keep to until a restart",
                        step_ms / 1000)

    def _compact(self, now: int) -> None:
        ids = self.retention.due(now, 50_000)
        if ids:
            self.journal.record(ev.compacted(ids))
            self._commit()

    def _snapshot(self) -> None:
        taker = self.snapshots
        if taker.running is not None:
            if taker.poll():
                self._snapshot_landed()
            return
        table = self.journal.table
        due = (table.last_seq - self._snapshot_seq >= self.settings.snapshot_every_records
               or (time.monotonic() - self._snapshot_started_s >= self.settings.snapshot_interval_s
                   and table.last_seq > self._snapshot_seq))
        if due and not self.journal.pending:
            self._snapshot_started_s = time.monotonic()
            self._snapshot_seq = table.last_seq
            taker.start(table)
            self.metrics.snapshot_pause.set(taker.last_pause_s)
            if taker.running is None:
                self._snapshot_landed()

    def _snapshot_landed(self) -> None:
        taker = self.snapshots
        oldest_kept = prune_snapshots(self.settings.data_dir, self.log.writer.files)
        if oldest_kept is not None:
            self.log.writer.remove_segments_through(oldest_kept)
        self.metrics.snapshot_duration.set(taker.last_duration_s)
        log.info("snapshot at seq %d written in %.0f ms (loop paused %.1f ms)", taker.last_seq,
                 taker.last_duration_s * 1000, taker.last_pause_s * 1000)

    def _sample(self, now: int) -> None:
        self._samples.append((now, dict(self.journal.table.totals)))
        while self._samples and self._samples[0][0] < now - 60_000:
            self._samples.popleft()
        finished_s = self.snapshots.last_finished or self._recovered_snapshot_s
        if finished_s:
            self.metrics.snapshot_age.set(time.time() - finished_s)

    # -- used by control commands ----------------------------------------------------------

    def interrupt(self, job_id: str) -> None:
        """Stop a cancelled in-flight job wherever it is (after the commit): take its message
        back if it still waits in Redis, and tell the worker running it to stop it — every
        live worker if no heartbeat has reported it yet (it may have just been popped)."""
        # Just cancelled while in flight: known, and dispatched.
        job = cast(JobRecord, self.journal.table.get(job_id))
        self._withdrawn.append((self.keys.ready(job.queue), self.dispatcher.message(
            job, job.attempt, cast(int, job.dispatched_ms))))
        running = self.reconciler.running_on.get(job_id)
        workers = [running[1]] if running is not None else [
            str(beat.get("id")) for beat in self.beats if beat.get("id")]
        self._cancels.extend((worker_id, job_id) for worker_id in workers)

    @property
    def served_queues(self) -> set[str]:
        """The queues the live workers consume, from their last heartbeats."""
        return self._served

    def status(self, now: int) -> dict[str, Any]:
        from .status import build_status
        return build_status(self, now)


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
