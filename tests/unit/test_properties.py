"""Property tests: random event histories through the journal, then every way of recovering.

Each example drives a ``Journal`` over a real (temporary) log with plausible events — enqueues
from a small id pool, dispatches via ``take_ready``, and acks, fails, expires, releases,
cancels, retries and compactions naming current, stale or unknown attempts, pauses and
schedule cursors — and checks that:

* the live table's invariants hold after every step (``validate()`` is empty);
* recovery from the log alone rebuilds the live table;
* recovery from a snapshot taken mid-way plus the overlapping log rebuilds it too;
* applying every logged record twice gives the same table as applying it once;
* both recoveries dispatch every pending job in the live table's order.
"""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.controller.journal import Journal
from fleet.state import IN_FLIGHT, JobTable
from fleet.state import events as ev
from fleet.wal import WalOptions, open_log, write_snapshot
from fleet.wal.files import Files
from fleet.wal.recovery import read_segments
from fleet.wal.segments import snapshot_dir
from fleet.wal.tools import dump_events

IDS = [f"job-{n}" for n in range(8)]
QUEUES = ["default", "mail"]
LEASE_MS = 30_000
RUN = {"w": "worker-1", "h": "host-a", "st": 1, "ft": 2}

new_ids = st.sampled_from(IDS)
picks = st.integers(-1, 2 * len(IDS))  # a job the table holds (see Driver.pick)
queues = st.sampled_from(QUEUES)
attempt_shift = st.sampled_from([0, 0, 0, -1, 1, -2])  # mostly current, sometimes stale
delays_ms = st.sampled_from([0, 0, 0, 1, 500, 5_000, -500])  # -500: a run-at time already past

ARGUMENTS = {
    "enqueue": st.tuples(new_ids, queues, st.integers(0, 2), delays_ms),
    "take": st.tuples(st.integers(0, 3)),
    "look": st.tuples(),
    "ack": st.tuples(picks, attempt_shift),
    "fail": st.tuples(picks, attempt_shift, st.booleans(), delays_ms),
    "expire": st.tuples(picks, attempt_shift, delays_ms),
    "release": st.tuples(picks, attempt_shift),
    "redispatch": st.tuples(picks),
    "cancel": st.tuples(picks),
    "retry": st.tuples(picks),
    "compact": st.tuples(st.lists(picks, max_size=3)),
    "compact_old": st.tuples(),
    "pause": st.tuples(queues),
    "resume": st.tuples(queues),
    "tick": st.tuples(st.integers(-1_000, 6_000)),  # below 0: the clock stepped back
    "commit": st.tuples(),
    "schedule": st.tuples(st.sampled_from(["hourly", "nightly"]), st.integers(-2, 2)),
}
# How often each kind of operation comes up: the common traffic most, operator actions least.
WEIGHTS = {"enqueue": 6, "take": 6, "look": 4, "ack": 4, "fail": 4, "expire": 3, "release": 2,
           "redispatch": 1, "cancel": 1, "retry": 2, "compact": 1, "compact_old": 1, "pause": 1,
           "resume": 2, "tick": 3, "commit": 3, "schedule": 1}
kinds = st.sampled_from([kind for kind, weight in WEIGHTS.items() for _ in range(weight)])
operations = kinds.flatmap(lambda kind: ARGUMENTS[kind].map(lambda args: (kind, *args)))

histories = st.lists(operations, min_size=20, max_size=100)
snapshot_points = st.floats(0, 1)  # how far into the history the snapshot is taken


class Driver:
    """Turns generated operations into journal records, the way the controller would."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.table = journal.table
        self.now_ms = 1_000_000

    def pick(self, index: int) -> str:
        """An even index names an in-flight job (if any), an odd one any job, -1 none."""
        pool = sorted(self.table.in_flight) if index % 2 == 0 else []
        pool = pool or sorted(self.table.jobs)
        return pool[index // 2 % len(pool)] if pool and index >= 0 else "ghost"

    def attempt(self, job_id: str, shift: int) -> int:
        job = self.table.jobs.get(job_id)
        return (job.attempt if job is not None else 1) + shift

    def run(self, op: tuple) -> None:
        getattr(self, f"do_{op[0]}")(*op[1:])

    def record(self, record: list) -> bool:
        return self.journal.record(record)

    def do_enqueue(self, job_id, queue, max_retries, delay_ms) -> None:
        spec = {"id": job_id, "q": queue, "f": "tasks:work", "a": [job_id, 1], "k": {"n": 2}}
        if delay_ms:
            spec["nb"] = self.now_ms + delay_ms
        self.record(ev.enqueued(spec, self.now_ms, 30.0, max_retries))

    def do_take(self, limit) -> None:
        self.do_look()
        for queue in QUEUES:
            for job in self.table.take_ready(queue, limit):
                assert self.record(ev.dispatched(job.id, job.attempt + 1,
                                                 self.now_ms + LEASE_MS, self.now_ms))

    def do_look(self) -> None:
        """The dispatcher looking, before it takes (or with no room to take): delayed jobs
        that came due join their lines."""
        if self.table.has_due(self.now_ms):
            assert self.record(ev.due(self.now_ms))

    def do_ack(self, index, shift) -> None:
        job_id = self.pick(index)
        self.record(ev.acked(job_id, self.attempt(job_id, shift), {"ok": job_id}, RUN,
                             self.now_ms))

    def do_fail(self, index, shift, final, delay_ms) -> None:
        job_id = self.pick(index)
        self.record(ev.failed(job_id, self.attempt(job_id, shift), "ValueError: no", RUN,
                              self.now_ms + delay_ms, final, self.now_ms))

    def do_expire(self, index, shift, delay_ms) -> None:
        job_id = self.pick(index)
        self.record(ev.expired(job_id, self.attempt(job_id, shift), self.now_ms + delay_ms,
                               self.now_ms))

    def do_release(self, index, shift) -> None:
        job_id = self.pick(index)
        self.record(ev.released(job_id, self.attempt(job_id, shift), "drain", self.now_ms))

    def do_redispatch(self, index) -> None:
        job = self.table.jobs.get(self.pick(index))
        if job is not None and job.state == IN_FLIGHT:  # the heal after Redis lost a message
            assert self.record(ev.dispatched(job.id, job.attempt + 1, self.now_ms + LEASE_MS,
                                             self.now_ms))

    def do_cancel(self, index) -> None:
        self.record(ev.cancelled(self.pick(index), self.now_ms))

    def do_retry(self, index) -> None:
        self.record(ev.retried(self.pick(index), self.now_ms))

    def do_compact(self, indexes) -> None:
        self.record(ev.compacted([self.pick(index) for index in indexes]))

    def do_compact_old(self) -> None:
        old = self.table.finished_before(self.now_ms + 1, 10)
        if old:
            self.record(ev.compacted(old))

    def do_pause(self, queue) -> None:
        self.record(ev.paused(queue))

    def do_resume(self, queue) -> None:
        self.record(ev.resumed(queue))

    def do_schedule(self, name, shift_s) -> None:
        # A cursor that would move backwards (shift < 0 after a later firing) is refused.
        self.record(ev.scheduled(name, self.now_ms + shift_s * 1000))

    def do_tick(self, ms) -> None:
        self.now_ms += ms

    def do_commit(self) -> None:
        self.journal.commit()


def run_history(data_dir: str, history: list[tuple], snapshot_point: float) -> JobTable:
    """Drive the history through a journal, snapshotting part-way; returns the live table."""
    log = open_log(data_dir, WalOptions(fsync="off", segment_bytes=2_048))
    journal = Journal(log.table, log.writer)
    driver = Driver(journal)
    snapshot_at = min(int(snapshot_point * len(history)), len(history) - 1)
    for number, op in enumerate(history):
        if number == snapshot_at:
            journal.commit()
            write_snapshot(log.table, data_dir)  # segments stay: the log overlaps it
        driver.run(op)
        assert log.table.validate() == [], op
    journal.commit()
    log.close()
    return log.table


def recovered(data_dir: str) -> JobTable:
    log = open_log(data_dir)
    table = log.table
    assert table.validate() == []
    log.close()
    return table


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, snapshot_points)
def test_any_history_keeps_invariants_and_recovers_the_same_table(history, snapshot_point):
    """Live table == log replay == snapshot + overlapping log == every record applied twice."""
    data_dir = tempfile.mkdtemp(prefix="fleet-prop-")
    try:
        expected = run_history(data_dir, history, snapshot_point).canonical()
        numbered = [(seq, record) for _, first_seq, records, _ in read_segments(data_dir, Files())
                    for seq, record in enumerate(records, first_seq)]
        assert [seq for seq, _ in numbered] == list(range(1, len(numbered) + 1))
        assert len(list(dump_events(data_dir))) == len(numbered)

        twice = JobTable()
        for seq, record in numbered:
            twice.apply(record, seq)
            twice.apply(list(record), seq)
        twice.apply_all([(record, seq) for seq, record in numbered])
        assert twice.canonical() == expected

        from_snapshot = open_log(data_dir)
        assert from_snapshot.report.snapshot is not None
        assert from_snapshot.table.validate() == []
        assert from_snapshot.table.canonical() == expected
        from_snapshot.close()
        shutil.rmtree(snapshot_dir(data_dir))
        assert recovered(data_dir).canonical() == expected
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def ready_ids(table: JobTable, queue: str) -> list[str]:
    return sorted(dispatch_order(table, queue))


def dispatch_order(table: JobTable, queue: str) -> list[str]:
    """The ids ``take_ready`` hands out for ``queue`` once every delay ran out, in order (it
    drains the queue)."""
    table.paused.discard(queue)
    table.apply(ev.due(10**13))
    return [job.id for job in table.take_ready(queue, 100)]


@settings(max_examples=60, deadline=None)
@given(histories, snapshot_points)
def test_recovery_keeps_the_fifo_order_of_ready_jobs(history, snapshot_point):
    """A table recovered from the log alone, and one from a snapshot plus the log, dispatch
    every pending job in the same order as the live table would have: cold and thawed jobs
    keep their places across a snapshot, and a delayed or retried job that came due keeps the
    place in line it was given live (its ``due`` record)."""
    data_dir = tempfile.mkdtemp(prefix="fleet-prop-")
    try:
        live = run_history(data_dir, history, snapshot_point)
        orders = [{queue: dispatch_order(live, queue) for queue in QUEUES}]
        orders.append({queue: dispatch_order(recovered(data_dir), queue) for queue in QUEUES})
        shutil.rmtree(snapshot_dir(data_dir))
        orders.append({queue: dispatch_order(recovered(data_dir), queue) for queue in QUEUES})
        assert orders[1] == orders[0], "snapshot + log"
        assert orders[2] == orders[0], "log alone"
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def lines(table: JobTable) -> dict:
    """Each queue's line, front first, and the delayed jobs in due order, read from
    ``dump()`` (which changes nothing)."""
    data = table.dump()
    out = {}
    for queue, section in data["ready"].items():
        order = list(section["cold"])
        for position, row in section["rows"]:
            order.insert(position, row[0])
        out[queue] = order
    out["delayed"] = [item[1] if len(item) == 3 else item[1][0] for item in data["delayed"]]
    return out


@settings(max_examples=60, deadline=None)
@given(histories)
def test_the_log_so_far_always_rebuilds_the_same_lines(history):
    """After every step, the records logged so far replay to the same lines (and delayed
    jobs in the same order) as the live table holds: nothing moves a job in line without a
    record saying so."""
    data_dir = tempfile.mkdtemp(prefix="fleet-prop-")
    try:
        log = open_log(data_dir, WalOptions(fsync="off"))
        journal = Journal(log.table, log.writer)
        logged: list[list] = []
        record = journal.record

        def keep(entry: list) -> bool:
            if record(entry):
                logged.append(entry)
                return True
            return False

        journal.record = keep
        driver = Driver(journal)
        for op in history:
            driver.run(op)
            replayed = JobTable()
            replayed.apply_all([(entry, seq) for seq, entry in enumerate(logged, 1)])
            assert lines(replayed) == lines(log.table), op
        log.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@settings(max_examples=40, deadline=None)
@given(histories, snapshot_points)
def test_recovered_table_has_every_pending_job_ready_to_dispatch(history, snapshot_point):
    """After recovery each pending job is in its queue's ready index exactly once."""
    data_dir = tempfile.mkdtemp(prefix="fleet-prop-")
    try:
        run_history(data_dir, history, snapshot_point)
        tables = [recovered(data_dir)]
        shutil.rmtree(snapshot_dir(data_dir))
        tables.append(recovered(data_dir))
        for table in tables:
            for queue in QUEUES:
                pending = sorted(job.id for job in table.jobs.values()
                                 if job.queue == queue and job.state == "pending")
                assert ready_ids(table, queue) == pending
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
