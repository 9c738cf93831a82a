"""A failed attempt's traceback: captured and capped by the worker, carried by the ack into the
FAIL record, kept in the job's history through replay and snapshots; older logs read fine."""

from __future__ import annotations

import random

import orjson

from fleet.config import Settings
from fleet.controller.journal import Journal
from fleet.controller.liveness import Liveness
from fleet.controller.options import ReconcileOptions
from fleet.controller.reconcile import Reconciler
from fleet.state import DEAD, JobTable
from fleet.state import events as ev
from fleet.wal import WalOptions, open_log, read_snapshot, write_snapshot
from fleet.worker.runner import TRACEBACK_MAX_BYTES, AllowList, Runner, traceback_text
from fleet.worker.wire import Identity

RUN = {"w": "worker-1", "h": "host-a", "st": 2_100, "ft": 2_200}
TB = 'Traceback (most recent call last):\n  File "t.py", line 1, in f\nValueError: x\n'


def fail_ack(func: str, *args) -> dict:
    runner = Runner(Identity("h:1:aa", "h"), AllowList(["tests.jobs"]), 5.0)
    raw, ok = runner.run({"id": "j", "n": 1, "f": func, "a": list(args)})
    assert not ok
    return orjson.loads(raw)


def test_failed_attempt_ack_carries_the_jobs_traceback_without_fleets_frames():
    """tb starts at the job's own frame and ends with the exception line."""
    ack = fail_ack("tests.jobs:fail", "kaput")
    assert ack["tb"].startswith("Traceback (most recent call last):\n")
    assert 'tests/jobs.py", line' in ack["tb"] and "runner.py" not in ack["tb"]
    assert ack["tb"].rstrip().endswith("ValueError: kaput")


def test_rejected_message_has_no_traceback():
    """A JobRejected (here: not allowed) says everything in e; no tb."""
    ack = fail_ack("os:getcwd")
    assert ack["fin"] is True and "tb" not in ack


def test_long_traceback_is_cut_to_8_kib_keeping_start_and_end():
    """A deep recursion's traceback: at most 8 KiB, head and exception line kept."""
    # Two functions calling each other: Python collapses only identical consecutive frames.
    def ping(n: int) -> None:
        if n == 0:
            raise RuntimeError("bottom")
        pong(n - 1)

    def pong(n: int) -> None:
        ping(n)

    try:
        ping(200)
    except RuntimeError as exc:
        text = traceback_text(exc)
    assert len(text.encode()) <= TRACEBACK_MAX_BYTES
    assert text.startswith("Traceback (most recent call last):")
    assert "bytes of traceback cut" in text and text.rstrip().endswith("RuntimeError: bottom")


def enqueue_and_dispatch(table: JobTable, job_id: str, max_retries: int = 0) -> None:
    spec = {"id": job_id, "q": "default", "f": "tasks:work", "a": [], "k": {}}
    assert table.apply(ev.enqueued(spec, 1_000, 30.0, max_retries))
    assert table.apply(ev.dispatched(job_id, 1, 60_000, 2_000))


def test_fail_record_keeps_the_traceback_in_the_attempt_and_the_job_view():
    """FAIL with tb: the attempt's history entry, to_dict's traceback and attempts show it."""
    table = JobTable()
    enqueue_and_dispatch(table, "a")
    record = ev.failed("a", 1, "ValueError: x", RUN, 0, False, 2_300, TB)
    assert ev.describe(record)["tb"] == TB
    assert table.apply(record)
    view = table.jobs["a"].to_dict()
    assert view["state"] == DEAD and view["traceback"] == TB
    assert view["attempts"][0]["traceback"] == TB


def test_fail_record_of_an_older_log_without_traceback_still_applies():
    """The 11-field FAIL of older logs: described and applied, traceback None."""
    table = JobTable()
    enqueue_and_dispatch(table, "old")
    record = ev.failed("old", 1, "ValueError: x", RUN, 0, False, 2_300)
    assert len(record) == 11 and "tb" not in ev.describe(record)
    assert table.apply(record)
    view = table.jobs["old"].to_dict()
    assert view["traceback"] is None and view["attempts"][0]["traceback"] is None


def test_traceback_survives_replay_and_snapshot(tmp_path):
    """Reopening the log (replay) and reading a snapshot both give the traceback back."""
    log = open_log(str(tmp_path), WalOptions())
    journal = Journal(log.table, log.writer)
    enqueue_and_dispatch_journal(journal, "r")
    journal.record(ev.failed("r", 1, "ValueError: x", RUN, 0, True, 2_300, TB))
    journal.commit()
    log.close()
    reopened = open_log(str(tmp_path), WalOptions())
    assert reopened.table.jobs["r"].last_traceback == TB
    snapshot = read_snapshot(write_snapshot(reopened.table, str(tmp_path)))
    reopened.close()
    assert snapshot.jobs["r"].last_traceback == TB


def enqueue_and_dispatch_journal(journal: Journal, job_id: str) -> None:
    spec = {"id": job_id, "q": "default", "f": "tasks:work", "a": [], "k": {}}
    journal.record(ev.enqueued(spec, 1_000, 30.0, 0))
    journal.record(ev.dispatched(job_id, 1, 60_000, 2_000))


def _reconciler(tmp_path) -> tuple[Reconciler, object]:
    log = open_log(str(tmp_path / "data"), lock=False)
    journal = Journal(log.table, log.writer)
    for job_id in ("big", "odd"):
        enqueue_and_dispatch_journal(journal, job_id)
    journal.commit()
    settings = Settings()
    return Reconciler(journal, ReconcileOptions.of(settings), random.Random(1),
                      Liveness(int(settings.heartbeat_s * 1000))), log


def test_controller_caps_an_acks_traceback_and_ignores_one_that_is_not_text(tmp_path):
    """A hostile ack: a 1 MB tb is cut to TRACEBACK_MAX_CHARS, a tb that is a list is dropped;
    both attempts are recorded as failed."""
    reconciler, log = _reconciler(tmp_path)
    acks = [orjson.dumps({"id": "big", "n": 1, "o": "fail", "e": "E: x", "tb": "t" * 1_000_000}),
            orjson.dumps({"id": "odd", "n": 1, "o": "fail", "e": "E: y", "tb": ["not", "text"]})]
    reconciler.handle_acks(acks, 3_000)
    reconciler.journal.commit()
    jobs = reconciler.journal.table.jobs
    assert jobs["big"].last_traceback == "t" * ev.TRACEBACK_MAX_CHARS
    assert jobs["odd"].state == DEAD and jobs["odd"].last_traceback is None
    log.close()
