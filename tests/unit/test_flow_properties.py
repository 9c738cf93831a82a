"""Property tests of flow control: random histories of jobs with priorities, keys and
expiries, limits set and cleared, takes, acks, failures, lapses, releases and cancels.

Checked: no take ever puts a queue past its concurrency limit or a key past its per-key
limit (counting from what was in flight before the take; a limit lowered below that lets
nothing through), jobs come out highest priority first, the table's invariants hold after
every step, and the log replayed and a snapshot loaded both give the live table.
"""

from __future__ import annotations

import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.job import validate_spec
from fleet.state import IN_FLIGHT, JobTable
from fleet.state import events as ev
from fleet.wal.snapshot import read_snapshot, write_snapshot

QUEUES = ("q", "r")
KEYS = (None, "a", "b", "c")
RUN = {"w": "w", "h": "h", "st": 1, "ft": 2}

limits = st.fixed_dictionaries({}, optional={
    "concurrency": st.integers(1, 4), "per_key": st.integers(1, 3)})
operations = st.one_of(
    st.tuples(st.just("enqueue"), st.sampled_from(QUEUES), st.integers(0, 9),
              st.sampled_from(KEYS), st.sampled_from([None, None, 1, 50])),
    st.tuples(st.just("limits"), st.sampled_from(QUEUES), limits),
    st.tuples(st.just("take"), st.sampled_from(QUEUES), st.integers(1, 6)),
    st.tuples(st.just("end"), st.integers(0, 50), st.sampled_from(
        ["ack", "fail", "expire", "release", "cancel"])),
    st.tuples(st.just("tick"), st.integers(0, 30_000)),
)


class Driver:
    def __init__(self) -> None:
        self.table = JobTable()
        self.records: list[ev.Record] = []
        self.now_ms = 1_000
        self.serial = 0

    def log(self, record: ev.Record) -> None:
        if self.table.apply(record, len(self.records) + 1):
            self.records.append(record)

    def enqueue(self, queue: str, priority: int, key: str | None, expires: int | None) -> None:
        self.serial += 1
        wire: dict[str, Any] = {"id": f"j{self.serial}", "f": "m:f", "q": queue, "py": priority}
        if key is not None:
            wire["ky"] = key
        if expires is not None:
            wire["ex"] = expires
        self.log(ev.enqueued(validate_spec(wire), self.now_ms, 30.0, 1))

    def take(self, queue: str, want: int) -> None:
        table = self.table
        before = table.queue_counts[queue][IN_FLIGHT]
        flight = dict(table.key_flight.get(queue, {}))
        jobs, expired = table.take(queue, want, self.now_ms)
        queue_limits = table.limits.get(queue, {})
        if "concurrency" in queue_limits:
            assert before + len(jobs) <= max(queue_limits["concurrency"], before) \
                and (before < queue_limits["concurrency"] or not jobs)
        if "per_key" in queue_limits:
            for key in {job.key for job in jobs if job.key is not None}:
                mine = sum(1 for job in jobs if job.key == key)
                assert flight.get(key, 0) + mine <= max(queue_limits["per_key"],
                                                       flight.get(key, 0))
                assert flight.get(key, 0) < queue_limits["per_key"]
        priorities = [job.priority for job in jobs]
        assert priorities == sorted(priorities, reverse=True)
        assert all(job.expires_ms == 0 or job.expires_ms >= self.now_ms or job.attempt
                   for job in jobs)  # expiry is about starting: a retry runs
        assert all(not job.attempt for job in expired)
        for job in expired:
            self.log(ev.cancelled(job.id, self.now_ms, "expired"))
        for job in jobs:
            self.log(ev.dispatched(job.id, job.attempt + 1, self.now_ms + 30_000, self.now_ms))

    def end(self, index: int, how: str) -> None:
        flying = sorted(self.table.in_flight)
        if not flying:
            return
        job = self.table.in_flight[flying[index % len(flying)]]
        n, at = job.attempt, self.now_ms
        self.log({"ack": lambda: ev.acked(job.id, n, None, RUN, at),
                  "fail": lambda: ev.failed(job.id, n, "E: x", RUN, at, False, at),
                  "expire": lambda: ev.expired(job.id, n, at, at),
                  "release": lambda: ev.released(job.id, n, "drain", at),
                  "cancel": lambda: ev.cancelled(job.id, at)}[how]())

    def run(self, op: tuple[Any, ...]) -> None:
        kind, *args = op
        if kind == "enqueue":
            self.enqueue(*args)
        elif kind == "limits":
            self.log(ev.limits(args[0], args[1]))
        elif kind == "take":
            self.take(*args)
        elif kind == "end":
            self.end(*args)
        else:
            self.now_ms += args[0]
            for job_id in self.table.expired_unstarted(self.now_ms, 5):
                assert self.table.get(job_id).attempt == 0
                self.log(ev.cancelled(job_id, self.now_ms, "expired"))
            if self.table.has_due(self.now_ms):
                self.log(ev.due(self.now_ms))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, min_size=10, max_size=120))
def test_limits_are_never_exceeded_and_replay_and_snapshot_give_the_live_table(history):
    driver = Driver()
    for op in history:
        driver.run(op)
        assert driver.table.validate() == [], op
    live = driver.table
    replayed = JobTable()
    replayed.replay(driver.records, 1, 0)
    assert replayed.canonical() == live.canonical()
    assert _flying(replayed) == _flying(live)
    with tempfile.TemporaryDirectory() as data_dir:
        loaded = read_snapshot(write_snapshot(live, data_dir))
    assert loaded.canonical() == live.canonical()
    assert loaded.validate() == [] and replayed.validate() == []


def _flying(table: JobTable) -> dict[str, dict[str, int]]:
    return {queue: flight for queue, flight in table.key_flight.items() if flight}
