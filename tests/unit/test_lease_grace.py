"""A lease that ran out while its message waited in Redis: the pop race with heartbeats."""

from __future__ import annotations

import random

from fleet.config import Settings
from fleet.controller.reconcile import Reconciler
from fleet.journal import Journal
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
    return Reconciler(journal, settings, random.Random(1))


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


def test_message_taken_but_never_reported_expires_after_two_heartbeats(tmp_path):
    """Nobody reports the attempt within two heartbeats of its lapse: it expires (a failure)."""
    reconciler = _reconciler(tmp_path)
    _expire_due(reconciler, LEASE_MS + 10)
    _expire_due(reconciler, LEASE_MS + 10 + 2 * HEARTBEAT_MS + 1)
    job = reconciler.journal.table.jobs["j"]
    assert job.state == PENDING and job.failures == 1


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
