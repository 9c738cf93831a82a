"""Listing jobs page by page from the table's indexes: every job once, filters, cursors that
survive the front of a line moving, bounded work per page, bad cursors refused."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.state import JobTable
from fleet.state import events as ev
from fleet.state.listing import ListingError, decode_cursor, encode_cursor, list_jobs

RUN = {"w": "w1", "h": "h", "st": 2_100, "ft": 2_200}


def _enqueue(table: JobTable, job_id: str, queue: str = "default", nb: int = 0,
             retries: int = 0) -> None:
    spec = {"id": job_id, "q": queue, "f": "tasks:work", "a": [1], "k": {}}
    if nb:
        spec["nb"] = nb
    assert table.apply(ev.enqueued(spec, 1_000, 30.0, retries))


def _mixed_table() -> tuple[JobTable, dict[str, set[str]]]:
    """40 pending on two queues, 5 delayed, 6 in flight, 5 completed, 3 dead, 2 cancelled."""
    table = JobTable()
    for i in range(60):
        _enqueue(table, f"a{i:02d}", "alpha" if i % 2 else "beta")
    for i in range(5):
        _enqueue(table, f"later{i}", "alpha", nb=10_000_000 + i)
    taken = table.take_ready("alpha", 10) + table.take_ready("beta", 6)
    for job in taken:
        assert table.apply(ev.dispatched(job.id, 1, 99_000, 2_000))
    for job in taken[:5]:
        assert table.apply(ev.acked(job.id, 1, 1, RUN, 2_300))
    for job in taken[5:8]:
        assert table.apply(ev.failed(job.id, 1, "ValueError: x", RUN, 0, True, 2_400))
    for job in taken[8:10]:
        assert table.apply(ev.cancelled(job.id, 2_500))
    expected = {state: {j.id for j in table.all_jobs() if j.state == state}
                for state in ("pending", "in_flight", "completed", "dead", "cancelled")}
    return table, expected


def _all_pages(table: JobTable, **filters) -> list[str]:
    ids, cursor, pages = [], None, 0
    while True:
        page, cursor = list_jobs(table, cursor=cursor, **filters)
        ids += [job.id for job in page]
        pages += 1
        assert pages < 1000
        if cursor is None:
            return ids


@pytest.mark.parametrize("state", [None, "pending", "in_flight", "completed", "dead",
                                   "cancelled"])
def test_pages_list_every_job_of_a_state_exactly_once(state):
    """Paging with limit 7 yields each job of the state once, and nothing else."""
    table, expected = _mixed_table()
    ids = _all_pages(table, state=state, limit=7)
    assert len(ids) == len(set(ids))
    want = set().union(*expected.values()) if state is None else expected[state]
    assert set(ids) == want


def test_queue_filter_and_fifo_order_of_pending_jobs():
    """--queue keeps to one queue; pending jobs come in line order, delayed ones after."""
    table, _ = _mixed_table()
    ids = _all_pages(table, state="pending", queue="alpha", limit=4)
    assert all(table.get(i).queue == "alpha" for i in ids)
    assert ids[-5:] == [f"later{i}" for i in range(5)]
    line = ids[:-5]
    assert line == sorted(line)


def test_cursor_stays_put_while_the_front_of_the_line_is_dispatched():
    """Jobs taken off the front between two pages do not make the next page skip any."""
    table, _ = _mixed_table()
    first, cursor = list_jobs(table, state="pending", queue="beta", limit=5)
    for job in table.take_ready("beta", 3):
        assert table.apply(ev.dispatched(job.id, 1, 99_000, 3_000))
    rest = _all_pages_from(table, cursor, state="pending", queue="beta", limit=5)
    still = {j.id for j in table.all_jobs() if j.state == "pending" and j.queue == "beta"}
    assert still - {j.id for j in first} == set(rest)


def _all_pages_from(table, cursor, **filters) -> list[str]:
    ids = []
    while cursor is not None:
        page, cursor = list_jobs(table, cursor=cursor, **filters)
        ids += [job.id for job in page]
    return ids


def test_listing_a_loaded_snapshot_thaws_nothing():
    """Cold jobs (from a snapshot) are listed as copies: the table's cold sets stay."""
    table, expected = _mixed_table()
    loaded = JobTable.load(table.dump())
    cold = len(loaded._cold) + len(loaded._cold_done)
    ids = _all_pages(loaded, limit=9)
    assert set(ids) == set().union(*expected.values())
    assert len(loaded._cold) + len(loaded._cold_done) == cold


def test_a_page_examines_a_bounded_number_of_entries():
    """A filter that matches nothing still ends each page after ``budget`` entries, with a
    cursor to go on: no page walks the whole index."""
    table = JobTable()
    for i in range(300):
        _enqueue(table, f"j{i}")
    for job in table.take_ready("default", 300):
        assert table.apply(ev.dispatched(job.id, 1, 99_000, 2_000))
        assert table.apply(ev.acked(job.id, 1, 1, RUN, 2_300))
    page, cursor = list_jobs(table, state="dead", limit=10, budget=50)
    assert page == [] and cursor is not None
    pages = 1
    while cursor is not None:
        page, cursor = list_jobs(table, state="dead", cursor=cursor, limit=10, budget=50)
        assert page == []
        pages += 1
    assert pages == 7  # 300 entries, 50 a page, and the last page finds the end


@pytest.mark.parametrize("bad", ["", "xyz", encode_cursor("q", 1), encode_cursor("f", -1),
                                 encode_cursor("r", [1, 2]), encode_cursor("d", ["a", 1])])
def test_bad_cursors_and_arguments_are_refused(bad):
    """A cursor fleet did not write, an unknown state or a limit out of range: ListingError."""
    table, _ = _mixed_table()
    with pytest.raises(ListingError):
        list_jobs(table, cursor=bad or "!!")
    with pytest.raises(ListingError, match="unknown state"):
        list_jobs(table, state="running")
    with pytest.raises(ListingError, match="limit"):
        list_jobs(table, limit=0)
    assert decode_cursor(encode_cursor("f", 3)) == ("f", 3)


def test_delayed_jobs_page_in_due_order_skipping_cancelled_ones():
    """Delayed jobs come in (due, enqueue) order across pages; a cancelled one is left out."""
    table = JobTable()
    dues = list(range(1, 61))
    random.Random(7).shuffle(dues)
    for i, due in enumerate(dues):
        _enqueue(table, f"d{i}", "alpha" if i % 3 else "beta", nb=10_000_000 + due * 10)
    assert table.apply(ev.cancelled("d5", 3_000))
    ids = _all_pages(table, state="pending", limit=7)
    want = sorted((f"d{i}" for i in range(60) if i != 5),
                  key=lambda job_id: dues[int(job_id[1:])])
    assert ids == want
    beta = _all_pages(table, state="pending", queue="beta", limit=4)
    assert beta == [job_id for job_id in want if int(job_id[1:]) % 3 == 0]


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_a_job_left_alone_while_paging_is_listed_exactly_once(seed):
    """Random enqueues, dispatches, acks, failures with backoff, cancels and due records
    between pages: every job no event touched during the listing is listed exactly once."""
    rng = random.Random(seed)
    table, clock = JobTable(), [10_000]
    for _ in range(rng.randint(0, 60)):
        _random_event(table, rng, clock, set())
    before = {job.id for job in table.all_jobs()}
    touched: set[str] = set()
    ids, cursor, pages = [], None, 0
    while True:
        page, cursor = list_jobs(table, cursor=cursor, limit=rng.randint(1, 9),
                                 budget=rng.choice([None, 5, 30]))
        ids += [job.id for job in page]
        pages += 1
        assert pages < 2000
        if cursor is None:
            break
        for _ in range(rng.randint(0, 3)):
            _random_event(table, rng, clock, touched)
    for job_id in before - touched:
        assert ids.count(job_id) == 1, job_id


def _random_event(table: JobTable, rng: random.Random, clock: list[int],
                  touched: set[str]) -> None:
    clock[0] += rng.randint(1, 50)
    now, jobs = clock[0], list(table.all_jobs())
    kind = rng.choice(["enqueue", "enqueue", "take", "ack", "fail", "cancel", "due"])
    if kind == "enqueue":
        job_id = f"j{len(jobs)}-{rng.randint(0, 10**6)}"
        _enqueue(table, job_id, rng.choice(["a", "b"]), nb=now + rng.randint(1, 200)
                 if rng.random() < 0.3 else 0, retries=rng.randint(0, 2))
    elif kind == "take":
        for job in table.take_ready(rng.choice(["a", "b"]), rng.randint(1, 4)):
            touched.add(job.id)
            table.apply(ev.dispatched(job.id, job.attempt + 1, now + 10_000, now))
    elif kind == "due":
        touched.update(job.id for job in jobs
                       if job.state == "pending" and job.not_before_ms <= now)
        table.apply(ev.due(now))
    else:
        pool = [job for job in jobs if job.state == "in_flight"] if kind != "cancel" \
            else [job for job in jobs if job.state in ("pending", "in_flight")]
        if pool:
            job = rng.choice(pool)
            touched.add(job.id)
            record = {"ack": lambda: ev.acked(job.id, job.attempt, 1, RUN, now),
                      "fail": lambda: ev.failed(job.id, job.attempt, "E: x", RUN,
                                                now + rng.randint(0, 100), False, now),
                      "cancel": lambda: ev.cancelled(job.id, now)}[kind]()
            table.apply(record)
