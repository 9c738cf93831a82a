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
   Under load, when that read holds only a few acks, the loop pauses ``GATHER_S`` before the
   next step so that the acks arriving meanwhile are taken together (docs/performance.md,
   "Round 3").

Nothing leaves Redis and nothing is told to anyone before step 3 returned. Healing (heal.py)
runs within step 2; heartbeats, compaction and snapshots run on their own cadence after step 4
(housekeeping.py), all inside the same loop.
"""

from __future__ import annotations

import gc
import logging
import random
import signal
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from ..clock import RunClock, wall_of
from ..config import Settings
from ..errors import TransportError
from ..keys import Keys
from ..metrics import Metrics, serve
from ..state import JobRecord, JobTable
from ..state import events as ev
from ..transport import ControllerWire, Inbox, Outbox, ReadLimits, connect
from ..wal import RecoveryReport, WalOptions, open_log
from ..wal.identity import load_or_create
from . import control
from .commit import GroupCommit
from .dispatch import Dispatcher
from .fence import LOST, Fence, boot_epoch, claim_when_writable
from .gate import Gate
from .heal import Healer, heal
from .housekeeping import CLOCK_STEP_LOG_MS, Housekeeping, Snapshots
from .intake import Intake
from .journal import Journal
from .limiter import record_config_limits
from .liveness import Liveness
from .options import DispatchOptions, IntakeOptions, JobDefaults, ReconcileOptions
from .outage import Outage
from .periodic import Scheduler
from .reconcile import Reconciler, expire_lapsed
from .retention import Retention
from .schedule_file import load_schedules

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
# Under load, when the next step's read holds only a few acks and no client request, a pause
# lets more acks gather first: fewer, bigger steps (each has a fixed cost: a round trip, a
# commit, an fsync) leave the CPU to the executors. Only while jobs are dispatched at
# GATHER_FROM_PER_S or more (slow jobs, or a light load, leave nothing to gather) and twice as
# many jobs as live executors are in flight (in Redis or prefetched), so no executor idles
# for it.
GATHER_S = 0.004
GATHER_BELOW = 64
GATHER_FROM_PER_S = 2000


class Controller:
    """The single writer of one namespace."""

    def __init__(self, settings: Settings, redis_client: Any = None, files: Any = None,
                 clock: Any = None, fork_snapshots: bool = True) -> None:
        self.settings = settings
        self.keys = Keys(settings.namespace)
        self.metrics = Metrics()
        self.log = open_log(settings.data_dir, WalOptions(
            fsync=settings.fsync, fsync_interval_ms=settings.fsync_interval_ms,
            segment_bytes=settings.segment_bytes), files=files)
        # The run clock drives leases, due times and retention (a test may pass its own); it
        # starts no earlier than the log's latest time (fleet/clock.py).
        self.clock = clock if clock is not None else RunClock(floor_ms=self.log.table.clock_ms)
        self.journal = Journal(self.log.table, self.log.writer)
        redis_client = redis_client or connect(settings.redis_url, namespace=settings.namespace)
        self.wire = ControllerWire(redis_client, self.keys,
                                   ReadLimits(settings.batch_bytes, settings.max_message_bytes))
        self.intake = Intake(self.journal, IntakeOptions.of(settings))
        self.wall = wall_of(self.clock)
        self.gate = Gate(settings, self.wall())
        self.dispatcher = Dispatcher(self.journal, DispatchOptions.of(settings))
        self.liveness = Liveness(heartbeat_ms := int(settings.heartbeat_s * 1000))
        self.progress_of = self.liveness.progress_of  # for the Desk (control.py)
        self.reconciler = Reconciler(self.journal, ReconcileOptions.of(settings), random.Random(),
                                     self.liveness)
        self.healer = Healer(self.journal, heartbeat_ms, self.reconciler.witness)
        self.sightings = self.dispatcher.sightings = self.reconciler.witness.sightings
        schedules = load_schedules(settings.schedule_file) if settings.schedule_file else []
        self.scheduler = Scheduler(self.journal, schedules, JobDefaults.of(settings))
        self.fence: Fence | None = None
        self.stopping = False
        self.started_s = time.monotonic()
        self.last_step_s = time.monotonic()
        self._cancels: list[tuple[str, str]] = []
        self._withdrawn: list[tuple[str, bytes]] = []
        self._inbox: Inbox | None = None  # read along with the last write, for the next step
        self._inbox_ms = 0  # when that read was sent
        self.retention = Retention(self.journal.table, settings.retention_s, self.clock())
        self.committer = GroupCommit(self.journal, self.log.writer, self.metrics,
                                     self._check_lease, lambda: self.stopping)
        self.housekeeping = Housekeeping(
            settings, self.clock, self.wire, self.journal, self.log, self.metrics, self.gate,
            self.liveness, self.reconciler, self.healer, self.retention,
            Snapshots(settings, self.log, self.metrics, files, fork_snapshots),
            self.committer.commit, self._heal_again, self._drop_counts)
        self.snapshots = self.housekeeping.snapshots.taker
        self.housekeeping.buckets = self.dispatcher.buckets
        self.malformed_control = 0
        self.outage = Outage()
        self.metrics_server: WSGIServer | None = None

    # -- life cycle ------------------------------------------------------------------------

    def start(self, serve_metrics: bool = True, take_over: bool = False) -> None:
        """Claim the namespace (``take_over``: from another data dir), record the boot, heal."""
        _report_recovery(self.log.report, self.metrics)
        gc.freeze()  # the recovered table is long-lived: keep it out of every collection
        epoch = boot_epoch(self.journal.table.epoch, self.wire)
        self.fence = Fence(self.wire, epoch, self.settings.namespace,
                           load_or_create(self.settings.data_dir), self.settings.data_dir,
                           take_over)
        claim_when_writable(self.fence)
        if take_over:
            log.warning("took namespace %r over at epoch %d", self.settings.namespace, epoch)
        self.log.writer.guard = self.fence.confirm  # no commit once fenced out
        self.wire.guard = self.fence.confirm  # and no push either
        self.journal.record(ev.booted(epoch, self.clock()))
        record_config_limits(self.journal, self.settings.limits)
        self.committer.commit()
        self.metrics.epoch.set(epoch)
        now = self.clock()
        self.reconciler.grant_grace(now)
        self.healer.start(now)
        if serve_metrics and self.settings.metrics_port:
            self.metrics_server = serve(self.metrics, self.settings.metrics_host,
                                        self.settings.metrics_port, self.healthy)
        log.info("controller epoch %d serving namespace %r", epoch, self.settings.namespace)
        _report_floor(self.clock)

    def run(self) -> int:
        """Loop until SIGTERM/SIGINT; returns the exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        while not self.stopping:
            try:
                if not self.step():
                    self._idle()
                elif _gathers(self._inbox, self.journal.table, self.liveness.executors,
                              self.dispatcher.total_rate_per_s, self.settings.batch_size):
                    time.sleep(GATHER_S)
                if self.outage.ended():
                    self.reconciler.redis_ok(self.clock())
            except TransportError as exc:
                self._on_transport_error(exc)
        return 0

    def _on_transport_error(self, exc: TransportError) -> None:
        """Redis is unreachable: wait and retry. Whatever this iteration meant to send may be
        lost, so heal afterwards: recorded events stay queued for the next commit, intake and
        acks are read again (answered as duplicate / counted stale) and lost messages are
        found and re-dispatched by the healer."""
        time.sleep(self.outage.failed(exc))
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
        table, buckets = self.journal.table, self.dispatcher.buckets
        due = min((d for d in (table.next_due_ms(), self.scheduler.next_due_ms(),
                               buckets.next_token_ms(table, self.clock())) if d is not None),
                  default=None)
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
        # Seals are checked on the raw bytes, before anything parses them, against the wall
        # clock: their senders stamp them with theirs.
        gate, seal_ms = self.gate, self.wall()
        out.receipts = gate.receipts(
            self.intake.handle(gate.intake(inbox.intake, seal_ms), now), seal_ms)
        self.reconciler.handle_acks(gate.acks(inbox.acks, seal_ms), now)
        out.replies = gate.replies(control.handle_requests(
            self, gate.control(inbox.control, seal_ms), now) + gate.resend_replies(), seal_ms)
        lapsed = expire_lapsed(self.reconciler, self.wire, self.keys, self.dispatcher, now)
        self.scheduler.fire_due(now)
        out.messages = heal(self.healer, self.wire, self.keys, self.journal.table,
                            self.reconciler.witness.holders, self.dispatcher, now)
        lengths = {q: inbox.ready_lengths.get(q, 0) for q in self._served_queues()}
        for queue, messages in self.dispatcher.fill(lengths, self.liveness.executors, now).items():
            out.messages.setdefault(queue, []).extend(messages)
        out.cancels, self._cancels = self._cancels, []
        out.withdrawn, self._withdrawn = self._withdrawn, []
        self.committer.commit()
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
        self.housekeeping.run(now)
        self.last_step_s = time.monotonic()
        return worked

    def _served_queues(self) -> list[str]:
        """Queues to dispatch into: those a live worker consumes (all, before any worker
        was seen), so a job for a queue nobody serves waits in the table, not in Redis."""
        known = list(self.journal.table.queue_counts)
        served = self.liveness.served
        return [q for q in known if q in served] if self.liveness.beats else known

    def _check_lease(self) -> None:
        """Waiting for disk space: stop at once if another controller took the namespace."""
        if self.fence is not None:
            self.fence.check(self.wire.lease_holder())

    def _on_redis_lost(self, now: int) -> None:
        log.warning("Redis lost its data (the controller key vanished): healing")
        self._heal_again(now)

    def _heal_again(self, now: int) -> None:
        """Redis lost writes: heal, trusting no worker's silence until they could beat."""
        self.metrics.redis_losses.inc()
        self.reconciler.redis_forgot(now)
        self.healer.start(now)

    # -- used by control commands ----------------------------------------------------------
    def interrupt(self, job_id: str) -> None:
        """Stop a cancelled in-flight job (known, dispatched) wherever it is, after the commit:
        its message taken back from Redis, its worker told (``Liveness.may_run``)."""
        job = cast(JobRecord, self.journal.table.get(job_id))
        self._withdrawn.append((self.keys.ready(job.queue), self.dispatcher.message(
            job, job.attempt, cast(int, job.dispatched_ms))))
        self._cancels.extend((worker_id, job_id) for worker_id in self.liveness.may_run(job_id))

    @property
    def served_queues(self) -> set[str]:
        """The queues the live workers consume, from their last heartbeats."""
        return self.liveness.served

    @property
    def running_on(self) -> Mapping[str, tuple[int, str]]:
        """job id -> (attempt, worker id) of every attempt a live worker reports."""
        return self.liveness.running_on

    def _drop_counts(self) -> dict[str, int]:
        """The stale and malformed messages the parts counted, by counter name."""
        return {"stale": self.reconciler.stale_acks, "rejected": self.intake.counts["rejected"],
                "intake": self.intake.malformed, "acks": self.reconciler.malformed_acks,
                "control": self.malformed_control, "heartbeat": self.liveness.malformed_beats}

    def status(self, now: int) -> dict[str, Any]:
        from .status import build_status
        return build_status(self, now)


def _gathers(inbox: Inbox | None, table: JobTable, executors: int, rate_per_s: float,
             batch_size: int) -> bool:
    """Whether to pause GATHER_S before the step that will take ``inbox`` (read along with
    the last step's write), with jobs dispatched at ``rate_per_s`` lately: never when it holds
    a client's request (a receipt or a reply would wait) or a full read of acks."""
    if inbox is None or inbox.intake or inbox.control or rate_per_s < GATHER_FROM_PER_S:
        return False
    return len(inbox.acks) < min(GATHER_BELOW, batch_size) \
        and len(table.in_flight) >= 2 * max(1, executors)


def _report_floor(clock: Any) -> None:
    """Say where the run clock started, when not at the wall clock (fleet/clock.py)."""
    if getattr(clock, "behind_floor_ms", 0) > CLOCK_STEP_LOG_MS:
        log.warning("the wall clock is %.1f s behind the log's latest record: the run clock "
                    "goes on from the log, and runs at 90 %% speed while ahead of the wall "
                    "clock until it has given that back", clock.behind_floor_ms / 1000)
    if getattr(clock, "floor_refused_ms", 0):
        log.warning("the log's latest record is %.0f s ahead of the wall clock, more than a "
                    "day: the run clock follows the wall clock, not the log",
                    clock.floor_refused_ms / 1000)


def _report_recovery(report: RecoveryReport, metrics: Metrics) -> None:
    log.info("%s", report.summary())
    for refused in report.refused_snapshots:
        log.warning("refused snapshot: %s", refused)
    metrics.recovery.set(report.duration_ms / 1000)
