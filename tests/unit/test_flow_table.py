"""Flow control in the job table: priorities, keys in turn, per-key and concurrency limits,
expiry; and that a snapshot and a replay give the table the live one has."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.job import validate_spec
from fleet.state import CANCELLED, PENDING, JobTable
from fleet.state import events as ev
from fleet.wal.snapshot import read_snapshot, write_snapshot

RUN = {"w": "w1", "h": "h", "st": 1, "ft": 2}


def enq(table: JobTable, job_id: str, queue: str = "q", at_ms: int = 1_000,
        **flow: Any) -> ev.Record:
    wire: dict[str, Any] = {"id": job_id, "f": "tasks:work", "q": queue}
    names = {"priority": "py", "key": "ky", "expires_s": "ex", "run_at_ms": "nb"}
    wire.update({names[name]: value for name, value in flow.items()})
    record = ev.enqueued(validate_spec(wire), at_ms, 30.0, 2)
    assert table.apply(record)
    return record


def dispatch_all(table: JobTable, queue: str = "q", limit: int = 100,
                 now_ms: int = 2_000) -> list[str]:
    jobs, _ = table.take(queue, limit, now_ms)
    for job in jobs:
        assert table.apply(ev.dispatched(job.id, job.attempt + 1, now_ms + 30_000, now_ms))
    return [job.id for job in jobs]


def ack(table: JobTable, job_id: str) -> None:
    assert table.apply(ev.acked(job_id, table.jobs[job_id].attempt, None, RUN, 3_000))


def test_higher_priority_goes_first_fifo_among_equals() -> None:
    table = JobTable()
    for job_id, priority in (("a", 0), ("b", 5), ("c", 9), ("d", 5), ("e", 0)):
        enq(table, job_id, priority=priority)
    assert dispatch_all(table) == ["c", "b", "d", "a", "e"]
    assert table.validate() == []


def test_keys_take_turns_so_a_small_key_is_not_held_back() -> None:
    table = JobTable()
    for n in range(100):
        enq(table, f"big-{n}", key="big")
    for n in range(3):
        enq(table, f"small-{n}", key="small")
    first = dispatch_all(table, limit=6)
    assert first == ["big-0", "small-0", "big-1", "small-1", "big-2", "small-2"]


def test_per_key_limit_parks_a_key_until_its_job_ends() -> None:
    table = JobTable()
    table.apply(ev.limits("q", {"per_key": 1}))
    for n in range(3):
        enq(table, f"a{n}", key="A")
        enq(table, f"b{n}", key="B")
    assert dispatch_all(table) == ["a0", "b0"]
    assert dispatch_all(table) == []  # both keys at their limit
    ack(table, "a0")
    assert dispatch_all(table) == ["a1"]
    assert table.key_flight == {"q": {"A": 1, "B": 1}}
    assert table.validate() == []


def test_concurrency_counts_every_job_in_flight() -> None:
    table = JobTable()
    table.apply(ev.limits("q", {"concurrency": 2}))
    for n in range(5):
        enq(table, f"j{n}")
    assert dispatch_all(table) == ["j0", "j1"]
    assert dispatch_all(table) == []
    ack(table, "j0")
    assert dispatch_all(table) == ["j2"]
    table.apply(ev.limits("q", {}))
    assert dispatch_all(table) == ["j3", "j4"]


def test_a_job_not_started_before_its_expiry_is_set_aside() -> None:
    table = JobTable()
    enq(table, "old", expires_s=1, at_ms=1_000)
    enq(table, "new", expires_s=60, at_ms=1_000)
    jobs, expired = table.take("q", 10, now_ms=5_000)
    assert [job.id for job in jobs] == ["new"] and [job.id for job in expired] == ["old"]
    assert table.apply(ev.cancelled("old", 5_000, "expired"))
    assert table.jobs["old"].state == CANCELLED and table.jobs["old"].error == "expired"
    assert table.totals["expired_unstarted"] == 1


def test_expiry_counts_from_the_run_at_time() -> None:
    table = JobTable()
    enq(table, "later", expires_s=2, run_at_ms=10_000)
    assert table.jobs["later"].expires_ms == 12_000


def _history(table: JobTable) -> list[ev.Record]:
    records: list[ev.Record] = []

    def log(record: ev.Record) -> None:
        records.append(record)
        assert table.apply(record, len(records))

    log(ev.limits("q", {"per_key": 2, "concurrency": 5}))
    for n in range(30):
        wire: dict[str, Any] = {"id": f"j{n}", "f": "tasks:work", "q": "q", "py": n % 3}
        if n % 3:
            wire["ky"] = f"k{n % 4}"
        if n % 5 == 0:
            wire["ex"] = 100
        log(ev.enqueued(validate_spec(wire), 1_000, 30.0, 2))
    for _ in range(4):
        jobs, _ = table.take("q", 100, 2_000)
        for job in jobs:
            log(ev.dispatched(job.id, job.attempt + 1, 40_000, 2_000))
        for job in jobs[:2]:
            log(ev.acked(job.id, job.attempt, None, RUN, 3_000))
    return records


def through_snapshot(table: JobTable, tmp_path: Any) -> JobTable:
    return read_snapshot(write_snapshot(table, str(tmp_path)))


def test_replay_and_snapshot_give_the_live_table(tmp_path: Any) -> None:
    live = JobTable()
    records = _history(live)
    replayed = JobTable()
    replayed.replay(records, 1, 0)
    assert replayed.canonical() == live.canonical()
    loaded = through_snapshot(live, tmp_path)
    assert loaded.canonical() == live.canonical()
    for table in (replayed, loaded):
        assert table.validate() == [] and table.key_flight == live.key_flight
    # and they go on within the limits (the keys' turns are not logged: the order of keys
    # after a recovery may differ from the live one's, never the limits)
    for table in (live, replayed, loaded):
        jobs, _ = table.take("q", 100, 2_000)
        keys = [job.key for job in jobs if job.key is not None]
        flight = table.key_flight.get("q", {})
        assert all(flight.get(key, 0) + keys.count(key) <= 2 for key in keys)
        assert len(jobs) + table.queue_counts["q"]["in_flight"] <= 5


def test_a_snapshot_keeps_limits_and_lanes(tmp_path: Any) -> None:
    table = JobTable()
    table.apply(ev.limits("q", {"rate": [10.0, 1]}))
    enq(table, "p", priority=7, key="tenant")
    loaded = through_snapshot(table, tmp_path)
    assert loaded.limits == {"q": {"rate": [10.0, 1]}}
    assert loaded.jobs["p"].state == PENDING and loaded.jobs["p"].key == "tenant"
    assert [job.id for job in loaded.take("q", 5)[0]] == ["p"]


@pytest.mark.parametrize("wire, reason", [
    ({"py": 10}, "priority must be an integer 0-9"),
    ({"py": -1}, "priority must be an integer 0-9"),
    ({"py": True}, "priority must be an integer 0-9"),
    ({"ky": ""}, "key must be 1-200 printable"),
    ({"ky": "x" * 201}, "key must be 1-200 printable"),
    ({"ky": 5}, "key must be a string"),
    ({"ky": "a\nb"}, "key must be 1-200 printable"),
    ({"ex": -1}, "expires_s must be a number"),
    ({"ex": 10 ** 12}, "expires_s must be a number"),
    ({"ex": float("nan")}, "expires_s must be a number"),
    ({"ex": "soon"}, "expires_s must be a number"),
])
def test_bad_flow_fields_are_refused_with_a_reason(wire: dict[str, Any], reason: str) -> None:
    from fleet.errors import JobSpecError

    with pytest.raises(JobSpecError, match=reason):
        validate_spec({"id": "j", "f": "tasks:work", **wire})


def test_describe_spells_out_a_flow() -> None:
    record = ev.enqueued(validate_spec({"id": "j", "f": "m:f", "py": 3, "ky": "t"}), 5, 1.0, 0)
    named = ev.describe(record)
    assert (named["py"], named["ky"], named["xp"]) == (3, "t", 0)
    traced = ev.enqueued(validate_spec({
        "id": "j", "f": "m:f", "py": 3,
        "tc": {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}}), 5, 1.0, 0)
    table = JobTable()
    table.apply(traced)
    job = table.jobs["j"]
    assert job.priority == 3 and job.trace_context is not None and job.func == "m:f"


def test_jobs_in_lanes_are_listed_page_by_page_exactly_once() -> None:
    from fleet.state import listing

    table = JobTable()
    for n in range(25):
        enq(table, f"j{n:02d}", priority=n % 3, key=f"k{n % 4}" if n % 2 else None)
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = listing.list_jobs(table, "pending", None, 4, cursor)
        seen += [job.id for job in page]
        if cursor is None:
            break
    assert sorted(seen) == [f"j{n:02d}" for n in range(25)] and len(seen) == 25


def test_an_expired_job_is_found_wherever_it_waits_and_a_started_one_never(
        tmp_path: Any) -> None:
    table = JobTable()
    table.apply(ev.paused("q"))
    for n in range(50):
        enq(table, f"plain-{n}")
    enq(table, "deep", expires_s=1, at_ms=1_000)  # behind 50 others, in a paused queue
    enq(table, "started", queue="r", expires_s=1, at_ms=1_000)
    enq(table, "waits", expires_s=1, at_ms=1_000, run_at_ms=0)
    assert dispatch_all(table, "r", now_ms=1_500) == ["started"]
    assert table.apply(ev.failed("started", 1, "E: x", RUN, 0, False, 1_600))  # back, pending
    assert table.expired_unstarted(1_900, 10) == []  # not yet
    loaded = through_snapshot(table, tmp_path)
    for each in (table, loaded):
        assert sorted(each.expired_unstarted(5_000, 10)) == ["deep", "waits"]
    assert table.expired_unstarted(9_000, 10) == []  # each is reported once
    jobs, expired = table.take("r", 10, 9_000)  # a retry past the expiry still runs
    assert [job.id for job in jobs] == ["started"] and expired == []
