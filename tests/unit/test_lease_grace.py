"""A lease that ran out while its message waited in Redis: the pop race with heartbeats."""

from __future__ import annotations

import random

from fleet.config import Settings
from fleet.controller.journal import Journal
from fleet.controller.liveness import Liveness
from fleet.controller.options import ReconcileOptions
from fleet.controller.reconcile import WORKER_RETRY_MAX_MS, Reconciler
from fleet.state import IN_FLIGHT, PENDING
from fleet.state import events as ev
from fleet.wal import open_log

HEARTBEAT_MS = 200
LEASE_MS = 2000


def _reconciler(tmp_path) -> Reconciler:
    log = open_log(str(tmp_path / "data"), lock=False)
    journal = Journal(log.table, log.writer)
    journal.record(ev.enqueued({"id": "j", "q": "default", "f": "m:f", "a": [], "k": {}},
                               0, 30.0, 3))
    journal.record(ev.dispatched("j", 1, LEASE_MS, 0))
    journal.commit()
    settings = Settings(lease_s=LEASE_MS / 1000, heartbeat_s=HEARTBEAT_MS / 1000)
    return Reconciler(journal, ReconcileOptions.of(settings), random.Random(1),
                      Liveness(HEARTBEAT_MS))


def _expire_due(reconciler: Reconciler, now_ms: int) -> None:
    """What the loop does: the message is no longer in its ready list (a worker took it)."""
    lapsed = reconciler.lapsed(now_ms)
    reconciler.expire(lapsed, [False] * len(lapsed), now_ms)


def test_message_popped_just_before_its_lease_ran_out_is_not_expired_before_a_heartbeat(
        tmp_path):
    """Taken from the list at the last moment and reported by the next heartbeat: the attempt
    keeps running instead of being expired and run a second time."""
    reconciler = _reconciler(tmp_path)
    _expire_due(reconciler, LEASE_MS + 10)
    job = reconciler.journal.table.jobs["j"]
    assert job.state == IN_FLIGHT and job.attempt == 1
    reconciler.on_heartbeats([{"id": "w", "jobs": [["j", 1, LEASE_MS]]}], LEASE_MS + 150)
    _expire_due(reconciler, LEASE_MS + 3 * HEARTBEAT_MS)
    assert job.state == IN_FLIGHT and job.attempt == 1


def test_message_gone_with_every_worker_beating_is_released_not_failed(tmp_path):
    """Nobody reports the attempt and no worker stopped beating: Redis lost the message, so
    after the grace the job goes back to pending without a failure (a new attempt)."""
    reconciler = _reconciler(tmp_path)
    beat = {"id": "w", "ts": 1, "queues": ["default"], "jobs": []}
    reconciler.on_heartbeats([beat], 100)
    _expire_due(reconciler, LEASE_MS + 10)
    reconciler.on_heartbeats([dict(beat, ts=2)], LEASE_MS + 100)
    _expire_due(reconciler, LEASE_MS + 10 + 2 * HEARTBEAT_MS + 1)
    job = reconciler.journal.table.jobs["j"]
    assert job.state == PENDING and job.failures == 0
    assert job.history[-1]["o"] == "released" and reconciler.lost_messages == 1


def test_message_taken_by_a_worker_that_died_before_reporting_it_expires(tmp_path):
    """A worker serving the queue stopped beating after the dispatch and nobody reports the
    attempt: it may have popped the job and died, so the lapse is a failed attempt."""
    reconciler = _reconciler(tmp_path)
    reconciler.on_heartbeats([{"id": "w", "ts": 1, "queues": ["default"], "jobs": []}], 100)
    reconciler.on_heartbeats([], 300)  # its heartbeat key is gone: the worker died
    _expire_due(reconciler, LEASE_MS + 10)
    _expire_due(reconciler, LEASE_MS + 10 + 2 * HEARTBEAT_MS + 1)
    job = reconciler.journal.table.jobs["j"]
    assert job.state == PENDING and job.failures == 1


def test_a_worker_of_another_queue_dying_does_not_charge_a_lost_message(tmp_path):
    """Only a worker that serves the job's queue could have popped it."""
    reconciler = _reconciler(tmp_path)
    reconciler.on_heartbeats([{"id": "w", "ts": 1, "queues": ["other"], "jobs": []}], 100)
    reconciler.on_heartbeats([], 300)
    _expire_due(reconciler, LEASE_MS + 10)
    _expire_due(reconciler, LEASE_MS + 10 + 2 * HEARTBEAT_MS + 1)
    assert reconciler.journal.table.jobs["j"].failures == 0


def test_a_reported_job_whose_worker_still_beats_lost_its_ack_and_is_not_failed(tmp_path):
    """The worker named the job, then stopped naming it while still beating, and no ack came:
    the ack was lost in Redis; the job runs again without a failure."""
    reconciler = _reconciler(tmp_path)
    beat = {"id": "w", "ts": 1, "queues": ["default"], "jobs": [["j", 1, 0]]}
    reconciler.on_heartbeats([beat], 100)
    reconciler.on_heartbeats([dict(beat, ts=2, jobs=[])], 300)
    _expire_due(reconciler, 100 + LEASE_MS + 10)
    reconciler.on_heartbeats([dict(beat, ts=3, jobs=[])], 100 + LEASE_MS + 100)
    _expire_due(reconciler, 100 + LEASE_MS + 10 + 2 * HEARTBEAT_MS + 1)
    job = reconciler.journal.table.jobs["j"]
    assert job.state == PENDING and job.failures == 0


def test_a_lease_granted_at_boot_replaces_a_recorded_deadline_far_ahead(tmp_path):
    """After a restart whose wall clock stepped back an hour, a job's recorded deadline lies an
    hour ahead: the boot grace replaces it, so the job lapses one lease after the boot."""
    reconciler = _reconciler(tmp_path)
    boot_ms = -3_600_000
    reconciler.grant_grace(boot_ms)
    assert reconciler.lapsed(boot_ms + LEASE_MS + 1) == [reconciler.journal.table.jobs["j"]]


def test_a_silent_workers_lingering_heartbeat_stops_extending_leases(tmp_path):
    """A worker frozen mid-job leaves its heartbeat key behind for seconds; once its `ts` stops
    moving for three heartbeat periods its jobs' leases are no longer extended."""
    reconciler = _reconciler(tmp_path)
    beat = {"id": "w1", "ts": 100, "jobs": [["j", 1, 0]]}
    assert reconciler.on_heartbeats([beat], 1000) == {"j"}
    assert reconciler.on_heartbeats([dict(beat, ts=300)], 1200) == {"j"}
    frozen = dict(beat, ts=300)
    assert reconciler.on_heartbeats([frozen], 1400) == {"j"}
    assert reconciler.on_heartbeats([frozen], 1800) == {"j"}
    assert reconciler.on_heartbeats([frozen], 1801) == set()
    _expire_due(reconciler, 1800 + LEASE_MS + 1)
    _expire_due(reconciler, 1800 + LEASE_MS + 2 * HEARTBEAT_MS + 2)
    assert reconciler.journal.table.jobs["j"].state == PENDING


def test_a_workers_silence_during_a_redis_outage_is_not_taken_for_its_death(tmp_path):
    """Redis refused writes (the controller's too), so the worker could not beat: its job's
    lapse waits until Redis has been healthy long enough to hear from it, and the worker,
    heard again, keeps its job."""
    reconciler = _reconciler(tmp_path)
    beat = {"id": "w", "ts": 1, "queues": ["default"], "jobs": [["j", 1, 0]]}
    reconciler.on_heartbeats([beat], 100)
    reconciler.on_heartbeats([beat], 100 + 4 * HEARTBEAT_MS)  # ts stuck: silent
    lapse_ms = 100 + LEASE_MS + 10
    reconciler.redis_trouble(lapse_ms)
    _expire_due(reconciler, lapse_ms)
    reconciler.redis_trouble(lapse_ms + 2 * HEARTBEAT_MS)
    _expire_due(reconciler, lapse_ms + 2 * HEARTBEAT_MS + 1)
    job = reconciler.journal.table.jobs["j"]
    assert job.state == IN_FLIGHT and job.failures == 0
    reconciler.on_heartbeats([dict(beat, ts=2)], lapse_ms + 3 * HEARTBEAT_MS)
    assert reconciler.lapsed(lapse_ms + 4 * HEARTBEAT_MS) == []


def test_a_flapping_redis_defers_a_dead_workers_lapse_by_one_lease_at_most(tmp_path):
    """Errors keep coming, the worker never beats again: after one more lease its job expires
    (a failed attempt) all the same."""
    reconciler = _reconciler(tmp_path)
    reconciler.on_heartbeats([{"id": "w", "ts": 1, "jobs": [["j", 1, 0]]}], 100)
    reconciler.on_heartbeats([], 300)
    now_ms = 100 + LEASE_MS + 10
    _expire_due(reconciler, now_ms)
    while reconciler.journal.table.jobs["j"].state == IN_FLIGHT:
        now_ms += HEARTBEAT_MS
        assert now_ms < 100 + 3 * LEASE_MS
        reconciler.redis_trouble(now_ms)
        _expire_due(reconciler, now_ms)
    assert reconciler.journal.table.jobs["j"].failures == 1
    assert now_ms >= 100 + 2 * LEASE_MS


def _oom_until_recovery(reconciler: Reconciler, beat: dict) -> int:
    """The timeline of a noeviction OOM that failed: the worker beats until 500, Redis refuses
    writes from 300 to 3000 (the controller's growing backoff notes its last error at 2900),
    the job's lease lapses in the middle (2510) with its message gone. Returns when the
    controller's first clean step after the errors came (3000)."""
    for now_ms in (100, 300, 500):
        reconciler.on_heartbeats([beat], now_ms)  # ts stays 1: silent from 500 on
    for now_ms in range(700, 3000, 200):
        if now_ms in (700, 900, 1300, 2100, 2900):
            reconciler.redis_trouble(now_ms)
        reconciler.on_heartbeats([beat], now_ms)
        _expire_due(reconciler, now_ms)
    reconciler.redis_ok(3000)
    return 3000


def test_a_worker_heard_only_after_its_backoff_following_an_oom_keeps_its_job(tmp_path):
    """Its first heartbeat after the OOM comes 2 s (its retry backoff) after Redis took writes
    again, past five heartbeats from the controller's last error: the job is not charged."""
    reconciler = _reconciler(tmp_path)
    beat = {"id": "w", "ts": 1, "queues": ["default"], "jobs": [["j", 1, 0]]}
    now_ms = _oom_until_recovery(reconciler, beat)
    heard_ms = now_ms + WORKER_RETRY_MAX_MS + 2 * HEARTBEAT_MS
    while now_ms < heard_ms:
        now_ms += HEARTBEAT_MS
        reconciler.on_heartbeats([beat], now_ms)
        _expire_due(reconciler, now_ms)
    reconciler.on_heartbeats([dict(beat, ts=2)], now_ms)
    _expire_due(reconciler, now_ms + 1)
    job = reconciler.journal.table.jobs["j"]
    assert job.state == IN_FLIGHT and job.failures == 0
    assert reconciler.lapsed(now_ms + HEARTBEAT_MS) == []


def test_a_worker_killed_during_an_oom_is_charged_once_redis_has_been_calm(tmp_path):
    """Same OOM, but the worker never beats again: its job expires (a failed attempt) once
    Redis has taken writes long enough for a live worker to be heard, not before."""
    reconciler = _reconciler(tmp_path)
    beat = {"id": "w", "ts": 1, "queues": ["default"], "jobs": [["j", 1, 0]]}
    now_ms = recovered_ms = _oom_until_recovery(reconciler, beat)
    while reconciler.journal.table.jobs["j"].state == IN_FLIGHT:
        now_ms += HEARTBEAT_MS
        assert now_ms < recovered_ms + reconciler.quiet_ms + LEASE_MS
        reconciler.on_heartbeats([], now_ms)  # its heartbeat key expired
        _expire_due(reconciler, now_ms)
    assert reconciler.journal.table.jobs["j"].failures == 1
    assert now_ms >= recovered_ms + WORKER_RETRY_MAX_MS


def test_heartbeats_wiped_with_redis_data_prove_no_death_until_workers_could_beat_again(
        tmp_path):
    """Redis restarted empty while the controller was frozen: the message and the worker's
    heartbeat key are both gone. The worker was beating when last heard, after the dispatch,
    so it "may hold" the job; but its silence is Redis's doing, not its death: the lapse
    waits until it could have beaten again, hears it, and releases the job without a
    failure."""
    reconciler = _reconciler(tmp_path)
    beat = {"id": "w", "ts": 1, "queues": ["default"], "jobs": []}
    reconciler.on_heartbeats([beat], 100)
    _expire_due(reconciler, LEASE_MS + 10)  # the lapse's grace began just before the freeze
    resumed_ms = LEASE_MS + 3000  # the controller's first step after its freeze
    reconciler.redis_forgot(resumed_ms)  # the controller key vanished
    reconciler.on_heartbeats([], resumed_ms)  # no heartbeat key survived
    _expire_due(reconciler, resumed_ms)
    _expire_due(reconciler, resumed_ms + 2 * HEARTBEAT_MS + 1)
    job = reconciler.journal.table.jobs["j"]
    assert job.state == IN_FLIGHT and job.failures == 0
    reconciler.on_heartbeats([dict(beat, ts=2)], resumed_ms + WORKER_RETRY_MAX_MS)
    _expire_due(reconciler, resumed_ms + WORKER_RETRY_MAX_MS + HEARTBEAT_MS + 1)
    assert job.state == PENDING and job.failures == 0
    assert reconciler.lost_messages == 1


def test_a_worker_dead_for_good_after_redis_lost_its_data_is_charged_after_the_quiet(
        tmp_path):
    """The same, but the worker never beats again: once a live worker would have been heard,
    its silence counts and the lapse is a failed attempt."""
    reconciler = _reconciler(tmp_path)
    reconciler.on_heartbeats([{"id": "w", "ts": 1, "queues": ["default"], "jobs": []}], 100)
    resumed_ms = 100 + LEASE_MS + 500
    reconciler.redis_forgot(resumed_ms)
    reconciler.on_heartbeats([], resumed_ms)
    _expire_due(reconciler, resumed_ms)
    later_ms = resumed_ms + reconciler.quiet_ms + 1
    _expire_due(reconciler, later_ms)
    assert reconciler.journal.table.jobs["j"].failures == 1


def test_a_lease_lapses_on_time_though_scans_before_its_deadline_were_skipped(tmp_path):
    """The scan skipped until the earliest deadline still finds the lease the step after it
    ran out, and a job dispatched after a skipped scan lapses on time too."""
    reconciler = _reconciler(tmp_path)
    assert reconciler.lapsed(10) == []
    assert reconciler.lapsed(LEASE_MS) == []  # the deadline itself: not yet lapsed
    journal = reconciler.journal
    journal.record(ev.enqueued({"id": "k", "q": "default", "f": "m:f", "a": [], "k": {}},
                               20, 30.0, 3))
    journal.record(ev.dispatched("k", 1, 20 + LEASE_MS, 20))
    assert [job.id for job in reconciler.lapsed(LEASE_MS + 1)] == ["j"]
    assert [job.id for job in reconciler.lapsed(LEASE_MS + 2)] == ["j"]  # until expired
    _expire_due(reconciler, LEASE_MS + 3)
    assert "k" in {job.id for job in reconciler.lapsed(LEASE_MS + 21)}


def test_a_grace_shorter_than_a_lease_is_not_skipped_by_the_scan(tmp_path):
    """A lapsed job gone from its list gets two heartbeats' grace; the next scan after the
    grace, not after a whole lease, finds it again."""
    reconciler = _reconciler(tmp_path)
    _expire_due(reconciler, LEASE_MS + 10)  # graced: until + 2 heartbeats
    assert reconciler.lapsed(LEASE_MS + 20) == []
    assert [job.id for job in reconciler.lapsed(LEASE_MS + 11 + 2 * HEARTBEAT_MS)] == ["j"]
