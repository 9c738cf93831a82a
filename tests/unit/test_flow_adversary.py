"""Flow control under odd input and odd orders: expired fronts past the take's cap, lanes of
many keys, ids reused after compaction, parked keys, bad limit records, crafted cursors."""

from __future__ import annotations

import base64
import json
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.errors import ConfigError
from fleet.flow import check_limits, parse_rate
from fleet.job import validate_spec
from fleet.state import CANCELLED, IN_FLIGHT, PENDING, JobTable, listing
from fleet.state import events as ev
from fleet.state.lanes import MAX_EXPIRED_PER_TAKE
from fleet.wal.snapshot import read_snapshot, write_snapshot

from .test_flow_properties import KEYS, QUEUES, Driver, operations
from .test_flow_table import RUN, ack, dispatch_all, enq, through_snapshot

TRACE = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}


@pytest.mark.parametrize("flow", [{"key": "k"}, {}, {"priority": 3}])
def test_expired_jobs_past_the_take_cap_are_never_dispatched(flow: dict[str, Any]) -> None:
    """More expired jobs at a line's front than one take sets aside: the take stops there
    rather than dispatching the expired jobs past its cap."""
    table = JobTable()
    for n in range(MAX_EXPIRED_PER_TAKE + 5):
        enq(table, f"x{n}", expires_s=1, **flow)
    enq(table, "fresh", **flow)
    jobs, expired = table.take("q", 10, 10 ** 9)
    assert all(job.expires_ms == 0 or job.expires_ms >= 10 ** 9 for job in jobs)
    assert len(expired) == MAX_EXPIRED_PER_TAKE
    for job in expired:
        table.apply(ev.cancelled(job.id, 10 ** 9, "expired"))
    assert dispatch_all(table, now_ms=10 ** 9) == ["fresh"]
    assert table.expired_unstarted(10 ** 9, 10) == [f"x{n}" for n in range(
        MAX_EXPIRED_PER_TAKE, MAX_EXPIRED_PER_TAKE + 5)]


def test_a_drained_lane_keeps_nothing_of_its_keys() -> None:
    """Keys used once each (an order id as key) leave no line and no count behind once their
    jobs are dispatched: the lanes' memory follows the keys with jobs waiting."""
    table = JobTable()
    for n in range(2_000):
        enq(table, f"j{n}", key=f"order-{n}", priority=n % 2)
    while ids := dispatch_all(table, limit=300):
        for job_id in ids:
            ack(table, job_id)
    lanes = table._lanes["q"]
    assert [len(level.lines) for level in lanes.levels.values()] == [0, 0]
    assert [len(set(level.popped) - {None}) for level in lanes.levels.values()] == [0, 0]
    assert [len(level.turn) for level in lanes.levels.values()] == [1, 0]  # the plain line
    assert table.validate() == []


def test_an_id_reused_after_its_keyed_job_was_compacted_runs_once() -> None:
    """A keyed job cancelled while its id waits in a lane, compacted, then a new job under
    the same id: the old entry never stands for the new job."""
    table = JobTable()
    enq(table, "same", key="k")
    assert table.apply(ev.cancelled("same", 1_500))
    assert table.apply(ev.compacted(["same"]))
    enq(table, "same", key="k", priority=4)
    assert dispatch_all(table) == ["same"]
    assert dispatch_all(table) == []
    assert table.key_flight == {"q": {"k": 1}} and table.validate() == []


def test_a_keyed_child_reaches_its_lane_and_counts_in_flight() -> None:
    """A job with parents and a key joins its key's lane when its parent completes, and is
    held to the key's limit."""
    table = JobTable()
    table.apply(ev.limits("q", {"per_key": 1}))
    enq(table, "parent")
    enq(table, "busy", key="k")
    wire = {"id": "child", "f": "tasks:work", "q": "q", "ky": "k", "dep": ["parent"]}
    assert table.apply(ev.enqueued_after(validate_spec(wire), 1_000, 30.0, 2))
    assert dispatch_all(table) == ["parent", "busy"]
    ack(table, "parent")
    assert table.jobs["child"].state == PENDING
    assert dispatch_all(table) == []  # the key is at its limit
    ack(table, "busy")
    assert dispatch_all(table) == ["child"]
    assert table.key_flight == {"q": {"k": 1}} and table.validate() == []


def test_a_keyed_retry_and_a_heal_count_the_key_once() -> None:
    """A keyed job failed back to pending, due again, dispatched, then dispatched again by
    the heal while in flight: its key counts one job in flight throughout."""
    table = JobTable()
    table.apply(ev.limits("q", {"per_key": 1}))
    enq(table, "a", key="k")
    enq(table, "b", key="k")
    assert dispatch_all(table) == ["a"]
    assert table.apply(ev.failed("a", 1, "E: x", RUN, 2_500, False, 2_100))
    assert table.key_flight.get("q", {}) == {}
    assert table.apply(ev.due(3_000))
    assert dispatch_all(table, now_ms=3_000) == ["b"]
    ack(table, "b")
    assert dispatch_all(table, now_ms=4_000) == ["a"]
    assert table.apply(ev.dispatched("a", 3, 90_000, 5_000))  # the heal: a new attempt
    assert table.key_flight == {"q": {"k": 1}} and table.validate() == []
    assert table.apply(ev.cancelled("a", 6_000))  # cancelled while it runs
    assert table.key_flight.get("q", {}) == {} and table.validate() == []


def test_parked_keys_come_back_when_the_limit_changes_or_through_a_snapshot(
        tmp_path: Any) -> None:
    """Keys parked at their per-key limit take turns again after the limit is raised, after
    it is cleared, and in a table loaded from a snapshot taken while they were parked."""
    table = JobTable()
    table.apply(ev.limits("q", {"per_key": 1}))
    for n in range(3):
        enq(table, f"a{n}", key="A")
        enq(table, f"b{n}", key="B")
    assert dispatch_all(table) == ["a0", "b0"]
    assert dispatch_all(table) == []
    loaded = through_snapshot(table, tmp_path)
    assert sorted(dispatch_all(loaded)) == []
    table.apply(ev.limits("q", {"per_key": 2}))
    assert sorted(dispatch_all(table)) == ["a1", "b1"]
    table.apply(ev.limits("q", {}))
    assert sorted(dispatch_all(table)) == ["a2", "b2"]
    loaded.apply(ev.limits("q", {}))
    assert sorted(dispatch_all(loaded)) == ["a1", "a2", "b1", "b2"]
    assert table.validate() == [] and loaded.validate() == []


def test_a_parked_key_whose_jobs_were_all_cancelled_leaves_nothing_behind() -> None:
    """Every waiting job of a parked key cancelled, then its running job ends: the key's line
    goes, and other keys go on."""
    table = JobTable()
    table.apply(ev.limits("q", {"per_key": 1}))
    for n in range(3):
        enq(table, f"a{n}", key="A")
    enq(table, "b0", key="B")
    assert dispatch_all(table) == ["a0", "b0"]
    dispatch_all(table)
    for job_id in ("a1", "a2"):
        assert table.apply(ev.cancelled(job_id, 2_500))
    ack(table, "a0")
    enq(table, "b1", key="B")
    ack(table, "b0")
    assert dispatch_all(table) == ["b1"]
    assert table._lanes["q"].parked <= {"B"} and table.validate() == []


def test_a_traced_job_with_a_flow_keeps_both_through_replay_and_snapshot(
        tmp_path: Any) -> None:
    """A traced job with a key, a priority and an expiry: the table, a replay and a snapshot
    all see its flow and its trace context."""
    records = [ev.enqueued(validate_spec({"id": "t", "f": "tasks:work", "q": "q", "py": 2,
                                          "ky": "k", "ex": 50, "tc": TRACE}), 1_000, 30.0, 2),
               ev.enqueued(validate_spec({"id": "u", "f": "tasks:work", "q": "q",
                                          "tc": TRACE}), 1_000, 30.0, 2)]
    table = JobTable()
    table.replay(records, 1, 0)
    for each in (table, through_snapshot(table, tmp_path)):
        job = each.jobs["t"]
        assert (job.priority, job.key, job.expires_ms) == (2, "k", 51_000)
        assert job.trace_context == TRACE and each.jobs["u"].flow is None
        assert [j.id for j in each.take("q", 5, 2_000)[0]] == ["t", "u"]


@pytest.mark.parametrize("kwargs", [
    {"x": [[1, 2]]}, {"x": {"a": 1}}, {"ends": "]]"}, {"z": [[]]},
])
def test_a_plain_job_whose_arguments_end_in_brackets_stays_plain(kwargs: Any) -> None:
    """A plain spec ends with its enqueue time, whatever its arguments hold: no argument
    shape makes it read as a flow."""
    table = JobTable()
    wire = {"id": "p", "f": "tasks:work", "q": "q", "a": [[[]]], "k": kwargs}
    table.apply(ev.enqueued(validate_spec(wire), 1_000, 30.0, 2))
    assert table.jobs["p"].flow is None and "q" not in table._lanes
    assert [job.id for job in table.take("q", 5)[0]] == ["p"]


@pytest.mark.parametrize("limits", [
    "abc", {"concurrency": "5"}, {"rate": "fast"}, {"per_key": True}, {"nonsense": 1},
    {"concurrency": 10 ** 40}, {"rate": [float("nan"), 1]}, [["concurrency", 5]],
])
def test_a_limit_record_with_bad_fields_is_refused_not_kept(limits: Any) -> None:
    """A limit record whose limits do not check (a hand-made or damaged log) is refused as a
    record of the wrong fields, naming its number in a replay, instead of being kept for
    every later dispatch to fail on."""
    table = JobTable()
    with pytest.raises(ValueError, match="limits"):
        table.apply([ev.LIMITS, "q", limits])
    assert table.limits == {}
    with pytest.raises(ValueError, match="record 1"):
        JobTable().replay([[ev.LIMITS, "q", limits]], 1, 0)


def test_a_snapshot_with_bad_limits_is_refused(tmp_path: Any) -> None:
    """Limits in a snapshot are checked as a log record's are."""
    from fleet.state import snapshot_form

    table = JobTable()
    table.apply(ev.limits("q", {"concurrency": 2}))
    data = snapshot_form.dump(table)
    data["limits"] = {"q": {"concurrency": "2"}}
    with pytest.raises(ValueError, match="limits"):
        snapshot_form.load(JobTable(), data)


@pytest.mark.parametrize("rate", [
    "1e309/s", "inf/s", "nan/s", "0/s", "0.0/m", "-1/s", "10", "10/d", "10/ s x", "１０/s",
    "1000001/s", [True, 1], [10, 7], [10, 1, 1], [float("inf"), 1], ["10", 1], None, 10,
])
def test_rates_that_do_not_parse_or_are_out_of_range_are_refused(rate: Any) -> None:
    """Every odd rate is a one-line ConfigError, never a traceback or a zero rate."""
    with pytest.raises(ConfigError):
        parse_rate(rate)


@pytest.mark.parametrize("rate, parsed", [
    (" 10 / s ", [10.0, 1]), ("0.0001/h", [0.0001, 3600]), ("60000000/m", [60000000.0, 60]),
    ([10, 1.0], [10.0, 1]),
])
def test_odd_but_valid_rates_parse(rate: Any, parsed: list[float]) -> None:
    """Spaces, tiny rates and the top of the range are accepted as written."""
    assert parse_rate(rate) == parsed


@pytest.mark.parametrize("limits", [
    {"concurrency": 5.0}, {"concurrency": True}, {"concurrency": 0}, {"per_key": -1},
    {"per_key": 10 ** 7}, {"concurrency": float("nan")}, {"concurrency": "5"},
])
def test_odd_limit_values_are_refused(limits: dict[str, Any]) -> None:
    """Floats, bools, zero, negatives, past the top, NaN and strings are refused."""
    with pytest.raises(ConfigError):
        check_limits("q", limits)


@pytest.mark.parametrize("where", [
    ["q", -1, "", 0], ["q", 0, "", -5], ["q", 10 ** 30, "k", 0], ["q", 0, None, 0],
    ["q", 0, "k"], [1, 0, "k", 0], "x", None, ["q", True, "k", 0], ["q", 0.5, "k", 0],
])
def test_a_crafted_lane_cursor_is_refused_in_one_line(where: Any) -> None:
    """A lane cursor of the wrong shape is a ListingError, not a traceback."""
    raw = json.dumps(["l", where]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    table = JobTable()
    enq(table, "j", key="k")
    with pytest.raises(listing.ListingError):
        listing.list_jobs(table, "pending", None, 5, cursor)


def test_a_lane_cursor_past_every_lane_ends_the_source() -> None:
    """A well-formed cursor naming a priority or key that does not exist lists what comes
    after it and no error."""
    table = JobTable()
    enq(table, "j", key="k", priority=9)
    enq(table, "d", key="k", run_at_ms=10 ** 12)
    for where in (["q", 99, "zzz", 0], ["a", 0, "", 0], ["q", 0, "k", 2 ** 61]):
        page, _ = listing.list_jobs(table, "pending", None, 5, listing.encode_cursor("l", where))
        assert [job.id for job in page] in (["d"], ["j", "d"])


def test_limits_lowered_below_what_is_in_flight_dispatch_nothing_more() -> None:
    """Concurrency and per-key lowered under the jobs in flight: nothing more goes until
    enough end; nothing goes negative."""
    table = JobTable()
    for n in range(6):
        enq(table, f"j{n}", key="k")
    assert len(dispatch_all(table, limit=4)) == 4
    table.apply(ev.limits("q", {"concurrency": 1, "per_key": 2}))
    assert dispatch_all(table) == []
    for job_id in ("j0", "j1", "j2"):
        ack(table, job_id)
    assert dispatch_all(table) == []  # concurrency 1, one in flight
    ack(table, "j3")
    assert dispatch_all(table) == ["j4"]
    assert table.queue_counts["q"][IN_FLIGHT] == 1 and table.validate() == []


def test_a_paused_queue_with_lanes_keeps_its_jobs_and_its_expiry() -> None:
    """Paused: nothing of its lanes is taken; expiry still finds its jobs; resumed: the rest
    go in order."""
    table = JobTable()
    table.apply(ev.paused("q"))
    enq(table, "old", key="k", expires_s=1)
    enq(table, "new", key="k", priority=1)
    assert table.take("q", 10, 10 ** 9) == ([], [])
    assert "q" not in table.ready_queues()
    assert table.expired_unstarted(10 ** 9, 10) == ["old"]
    table.apply(ev.cancelled("old", 10 ** 9, "expired"))
    table.apply(ev.resumed("q"))
    assert dispatch_all(table) == ["new"]
    assert table.jobs["old"].state == CANCELLED and table.validate() == []


def test_a_run_at_time_in_the_past_does_not_expire_a_job_on_arrival() -> None:
    """A run-at time before the job's acceptance (a client's clock behind the controller's):
    its expiry counts from the acceptance, not from that past time."""
    table = JobTable()
    enq(table, "late", at_ms=10_000_000, run_at_ms=10_000_000 - 3_600_000, expires_s=60)
    assert table.jobs["late"].expires_ms == 10_060_000
    assert table.expired_unstarted(10_001_000, 10) == []
    enq(table, "ahead", at_ms=10_000_000, run_at_ms=10_005_000, expires_s=60)
    assert table.jobs["ahead"].expires_ms == 10_065_000


def test_held_back_by_per_key_counts_the_parked_keys_lines_at_every_priority() -> None:
    """The per-key figure is the entries queued for parked keys, whatever their priority,
    read from the parked keys alone (not a walk of every key's line)."""
    from fleet.controller.limiter import Buckets, held_back

    table = JobTable()
    table.apply(ev.limits("q", {"per_key": 1}))
    for n in range(3):
        enq(table, f"a{n}", key="A", priority=n)
        enq(table, f"b{n}", key="B")
    for n in range(50):
        enq(table, f"other{n}", key=f"k{n}")
    dispatch_all(table, limit=3)  # a2 (priority 2), a1, then b0 at priority 0
    dispatch_all(table)
    lanes = table._lanes["q"]
    assert {"A", "B"} <= lanes.parked
    parked = sum(len(line) for _, key, line in lanes.entries() if key in lanes.parked)
    assert held_back(table, Buckets())["q"]["per_key"] == parked == lanes.parked_entries()


# -- random histories with what the flow property test leaves out --------------------------

_more = st.one_of(
    st.tuples(st.just("heal"), st.integers(0, 50)),
    st.tuples(st.just("compact"), st.integers(0, 9), st.sampled_from(KEYS)),
    st.tuples(st.just("pause"), st.sampled_from(QUEUES)),
    st.tuples(st.just("resume"), st.sampled_from(QUEUES)),
    st.tuples(st.just("delayed"), st.sampled_from(QUEUES), st.integers(0, 9),
              st.sampled_from(KEYS)),
    st.tuples(st.just("child"), st.integers(0, 50), st.sampled_from(KEYS)),
    st.tuples(st.just("retry"), st.integers(0, 50)),
    st.tuples(st.just("swap")),
)


class MoreDriver(Driver):
    """The flow property test's driver, plus heals, compaction and reused ids, pauses,
    delays, children, dead-letter retries and a swap for the table a snapshot loads."""

    def run(self, op: tuple[Any, ...]) -> None:
        kind, *args = op
        handler = getattr(self, f"do_{kind}", None)
        if handler is None:
            super().run(op)
        else:
            handler(*args)

    def _enqueue_wire(self, wire: dict[str, Any], after: bool = False) -> None:
        make = ev.enqueued_after if after else ev.enqueued
        self.log(make(validate_spec(wire), self.now_ms, 30.0, 1))

    def do_heal(self, index: int) -> None:
        flying = sorted(self.table.in_flight)
        if flying:
            job = self.table.in_flight[flying[index % len(flying)]]
            self.log(ev.dispatched(job.id, job.attempt + 1, self.now_ms + 30_000,
                                   self.now_ms))

    def do_compact(self, index: int, key: str | None) -> None:
        done = sorted(job.id for job in self.table.all_jobs()
                      if job.state in ("completed", "dead", "cancelled"))
        if not done:
            return
        self.log(ev.compacted(done))
        wire: dict[str, Any] = {"id": done[index % len(done)], "f": "m:f", "q": "q",
                                "py": index}
        if key is not None:
            wire["ky"] = key
        self._enqueue_wire(wire)

    def do_pause(self, queue: str) -> None:
        self.log(ev.paused(queue))

    def do_resume(self, queue: str) -> None:
        self.log(ev.resumed(queue))

    def do_delayed(self, queue: str, priority: int, key: str | None) -> None:
        self.serial += 1
        wire: dict[str, Any] = {"id": f"d{self.serial}", "f": "m:f", "q": queue,
                                "py": priority, "nb": self.now_ms + 5_000, "ex": 20}
        if key is not None:
            wire["ky"] = key
        self._enqueue_wire(wire)

    def do_child(self, index: int, key: str | None) -> None:
        ids = sorted(job.id for job in self.table.all_jobs())
        if not ids:
            return
        self.serial += 1
        wire: dict[str, Any] = {"id": f"c{self.serial}", "f": "m:f", "q": "r",
                                "dep": [ids[index % len(ids)]], "af": index % 2 == 0}
        if key is not None:
            wire["ky"] = key
        self._enqueue_wire(wire, after=True)

    def do_retry(self, index: int) -> None:
        dead = sorted(job.id for job in self.table.dead_jobs())
        if dead:
            self.log(ev.retried(dead[index % len(dead)], self.now_ms))

    def do_swap(self) -> None:
        with tempfile.TemporaryDirectory() as data_dir:
            self.table = read_snapshot(write_snapshot(self.table, data_dir))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(operations, _more), min_size=10, max_size=150))
def test_limits_hold_and_replay_agrees_through_heals_reused_ids_and_snapshot_swaps(
        history: list[tuple[Any, ...]]) -> None:
    """Random histories with heals, compaction and reused ids, pauses, delays, children,
    retries from dead and the live table swapped for its snapshot: every take within the
    limits, the invariants after each step, and the log replayed gives the live table."""
    driver = MoreDriver()
    for op in history:
        driver.run(op)
        assert driver.table.validate() == [], op
    replayed = JobTable()
    replayed.replay(driver.records, 1, 0)
    assert replayed.canonical() == driver.table.canonical()
    assert replayed.key_flight == {q: f for q, f in driver.table.key_flight.items() if f} \
        or _same_flight(replayed, driver.table)


def _same_flight(one: JobTable, other: JobTable) -> bool:
    def flying(table: JobTable) -> dict[str, dict[str, int]]:
        return {queue: flight for queue, flight in table.key_flight.items() if flight}
    return flying(one) == flying(other)


def test_a_pending_job_with_a_key_of_its_own_costs_a_few_hundred_bytes() -> None:
    """Keys used by one job each (an order id as key): each key's line is a small list, not
    a deque's 600-byte block, so such a backlog costs well under 500 bytes a job."""
    import gc
    import tracemalloc

    records = [ev.enqueued(validate_spec({"id": f"j{n}", "f": "m:f", "q": "q",
                                          "ky": f"order-{n}"}), 1_000, 30.0, 2)
               for n in range(20_000)]
    gc.collect()
    tracemalloc.start()
    try:
        table = JobTable()
        table.replay(records, 1, 0)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert used / len(records) < 500
    assert len(dispatch_all(table, limit=20_000)) == 20_000


@pytest.mark.parametrize("args", [
    {"queue": "q", "concurrency": True}, {"queue": "q", "concurrency": 2.5},
    {"queue": "q", "concurrency": 10 ** 18}, {"queue": "q", "per_key": "1"},
    {"queue": "q", "rate": "1e309/s"}, {"queue": "q", "rate": "0/s"},
    {"queue": "q", "rate": ["1", 1]}, {"queue": "q", "rate": {"n": 1}},
    {"queue": "q", "rate": [[10], 1]}, {"queue": "q"}, {"queue": ["q"], "concurrency": 1},
    {"queue": "q" * 65, "concurrency": 1}, {"queue": "a b", "concurrency": 1},
])
def test_limit_set_with_odd_arguments_is_refused_and_records_nothing(
        tmp_path: Any, args: dict[str, Any]) -> None:
    """Wrong types, bools, huge numbers, rates that do not parse and bad queue names are an
    error reply, and no limit record."""
    from fleet.controller.journal import Journal

    from .test_control import FakeDesk, ask, open_log

    log = open_log(str(tmp_path / "data"), lock=False)
    try:
        desk = FakeDesk(Journal(log.table, log.writer))
        reply = ask(desk, "limit_set", **args)
        assert not reply["ok"] and reply["error"] and desk.journal.pending == []
        cleared = ask(desk, "limit_clear", queue="q", kinds=[["rate"]])
        assert not cleared["ok"] and desk.journal.pending == []
    finally:
        log.close()


@pytest.mark.parametrize("key", ["é" * 200, "😀" * 200, "ﷺ", " ", "a\u0301", "<script>"])
def test_odd_but_printable_keys_are_kept_as_they_are(key: str, tmp_path: Any) -> None:
    """Multibyte, combining, wide and markup keys up to 200 characters are keys like any
    other, through a take and a snapshot."""
    table = JobTable()
    table.apply(ev.limits("q", {"per_key": 1}))
    enq(table, "a", key=key)
    enq(table, "b", key=key)
    assert dispatch_all(table) == ["a"]
    loaded = through_snapshot(table, tmp_path)
    assert loaded.key_flight == {"q": {key: 1}} and loaded.jobs["b"].key == key
    ack(loaded, "a")
    assert dispatch_all(loaded) == ["b"]


@pytest.mark.parametrize("key", ["\ud800", "a\u200fb", "\u202e", "\x00", "\ufeff", "é" * 201])
def test_keys_with_surrogates_marks_or_controls_are_refused(key: str) -> None:
    """Lone surrogates, direction marks, NUL, a BOM and 201 characters are refused."""
    from fleet.errors import JobSpecError

    with pytest.raises(JobSpecError, match="key must be"):
        validate_spec({"id": "j", "f": "tasks:work", "ky": key})


def test_lanes_of_thousands_of_keys_are_listed_once_in_key_order() -> None:
    """More keys than one scan reads (listing reads the smallest keys a batch at a time):
    every pending job is listed exactly once, in priority then key order, page by page."""
    table = JobTable()
    count = 2 * listing._KEYS_PER_BATCH + 300
    for n in range(count):
        enq(table, f"j{n:05d}", key=f"k{(n * 7919) % count:05d}", priority=n % 2)
    enq(table, "nokey", priority=1)
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = listing.list_jobs(table, "pending", None, 97, cursor)
        seen += [job.id for job in page]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == count + 1
    jobs = [table.jobs[job_id] for job_id in seen]
    order = [(-job.priority, job.key or "") for job in jobs]
    assert order == sorted(order)


def test_fill_never_dispatches_a_job_past_its_expiry_however_many_wait_in_front() -> None:
    """Through the dispatcher: thousands of expired jobs ahead of fresh ones, keyed and not,
    with a rate and a per-key limit; each fill cancels some and dispatches only live jobs,
    and within a few fills every expired job is cancelled and every fresh one dispatched."""
    from fleet.config import Settings
    from fleet.controller.dispatch import Dispatcher
    from fleet.controller.options import DispatchOptions

    from .test_dispatch import RecordingJournal

    journal = RecordingJournal()
    table = journal.table
    table.apply(ev.limits("q", {"per_key": 50, "rate": [1_000_000, 1]}))
    expired = MAX_EXPIRED_PER_TAKE + 2_000
    for n in range(expired):
        wire = {"id": f"x{n}", "f": "tasks:work", "q": "q", "ex": 1, "ky": f"k{n % 3}"}
        journal.record(ev.enqueued(validate_spec(wire), 1_000, 30.0, 2))
    for n in range(30):
        wire = {"id": f"f{n}", "f": "tasks:work", "q": "q", "ky": f"k{n % 3}"}
        journal.record(ev.enqueued(validate_spec(wire), 10 ** 9, 30.0, 2))
    dispatcher = Dispatcher(journal, DispatchOptions.of(Settings(ready_window=100)))
    for step in range(6):
        dispatcher.fill({"q": 0}, 1, 10 ** 9 + step)
        assert all(not table.jobs[record[1]].expires_ms for record in journal.recorded
                   if record[0] == ev.DISPATCHED)
        assert table.validate() == []
    assert table.totals["expired_unstarted"] == expired
    assert table.queue_counts["q"][IN_FLIGHT] == 30
