"""Dependencies in the job table: waiting, promotion, cascading cancellation, results."""

from __future__ import annotations

import orjson

from fleet.state import CANCELLED, COMPLETED, PENDING, JobTable
from fleet.state import events as ev
from fleet.state.record import WAITING

from .test_table import ack, enqueue, fail, take_and_dispatch


def after(table: JobTable, job_id: str, parents: list[str], allow_failure: bool = False,
          pass_results: bool = False, queue: str = "default") -> bool:
    spec = {"id": job_id, "q": queue, "f": "tasks:work", "a": [], "k": {}, "dep": parents,
            "af": allow_failure, "pr": pass_results}
    return table.apply(ev.enqueued_after(spec, 1_000, 30.0, 0))


def test_a_child_waits_until_its_last_parent_completes_then_joins_its_line():
    """Waiting while any parent is open; pending (and dispatchable) after the last ack."""
    table = JobTable()
    enqueue(table, "a")
    enqueue(table, "b")
    assert after(table, "c", ["a", "b"])
    assert table.jobs["c"].state == WAITING and table.stats()["states"][WAITING] == 1
    assert take_and_dispatch(table) == ["a", "b"]
    ack(table, "a")
    assert table.jobs["c"].state == WAITING
    assert table.waiting_view(table.jobs["c"])["waiting_on"] == ["b"]
    ack(table, "b")
    assert table.jobs["c"].state == PENDING
    assert take_and_dispatch(table) == ["c"]
    assert table.validate() == []


def test_a_dead_parent_cancels_the_whole_chain_below_it_with_the_reason():
    """Without allow_failure a dead parent cancels its child, and that child's child."""
    table = JobTable()
    enqueue(table, "a", max_retries=0)
    after(table, "b", ["a"])
    after(table, "c", ["b"])
    take_and_dispatch(table)
    fail(table, "a")
    assert table.jobs["b"].state == CANCELLED
    assert table.jobs["b"].error == "dependency a ended dead"
    assert table.jobs["c"].error == "dependency b ended cancelled"
    assert table.validate() == []


def test_allow_failure_runs_once_every_parent_ended_whatever_the_outcome():
    """A chord callback runs after a dead and a completed member, with the one result."""
    table = JobTable()
    enqueue(table, "a", max_retries=0)
    enqueue(table, "b")
    after(table, "cb", ["a", "b"], allow_failure=True, pass_results=True)
    take_and_dispatch(table)
    fail(table, "a")
    assert table.jobs["cb"].state == WAITING
    ack(table, "b", result={"v": 2})
    assert table.jobs["cb"].state == PENDING
    assert table.graph.parent_results("cb") == {"b": {"v": 2}}


def test_a_child_of_finished_parents_is_decided_at_once():
    """Parents already completed: pending now; a parent already dead: cancelled now."""
    table = JobTable()
    enqueue(table, "a")
    enqueue(table, "d", max_retries=0)
    take_and_dispatch(table)
    ack(table, "a")
    fail(table, "d")
    after(table, "x", ["a"])
    after(table, "y", ["a", "d"])
    assert table.jobs["x"].state == PENDING
    assert table.jobs["y"].state == CANCELLED
    assert table.validate() == []


def test_cancelling_a_parent_cancels_its_waiting_children():
    """A cancel of the parent acts like its death on the children below it."""
    table = JobTable()
    enqueue(table, "a")
    after(table, "b", ["a"])
    table.apply(ev.cancelled("a", 2_000))
    assert table.jobs["b"].error == "dependency a ended cancelled"


def test_a_retried_dead_parent_does_not_count_off_its_children_twice():
    """allow_failure child of a dead parent that is retried and completes still waits for
    its other, open parent."""
    table = JobTable()
    enqueue(table, "a", max_retries=0)
    enqueue(table, "b")
    after(table, "c", ["a", "b"], allow_failure=True)
    table.apply(ev.dispatched("a", 1, 40_000, 2_000))
    fail(table, "a")
    table.apply(ev.retried("a", 3_000))
    table.apply(ev.dispatched("a", 2, 40_000, 3_000))
    ack(table, "a")
    assert table.jobs["c"].state == WAITING
    assert table.validate() == []


def test_a_snapshot_holds_waiting_jobs_and_edges():
    """dump/load keeps the waiting child, its edges, and promotes it on the parent's ack."""
    table = JobTable()
    enqueue(table, "a")
    after(table, "b", ["a"], pass_results=True)
    loaded = JobTable.load(table.dump())
    assert loaded.canonical() == table.canonical()
    take_and_dispatch(loaded)
    ack(loaded, "a", result=7)
    assert loaded.jobs["b"].state == PENDING and loaded.graph.parent_results("b") == {"a": 7}
    assert loaded.jobs["a"].state == COMPLETED
    assert loaded.validate() == []


def test_a_job_whose_parent_results_are_too_big_is_cancelled_saying_so():
    """Parent results over the cap never reach a dispatch message."""
    table = JobTable()
    enqueue(table, "a")
    after(table, "b", ["a"], pass_results=True)
    take_and_dispatch(table)
    ack(table, "a", result="x" * (600 * 1024))
    assert table.jobs["b"].state == CANCELLED
    assert "parents' results are" in table.jobs["b"].error


def test_waiting_jobs_are_listed_under_their_state_page_by_page():
    """``fleet jobs --state waiting`` walks the waiting jobs; pages neither skip nor repeat."""
    from fleet.state import listing

    table = JobTable()
    enqueue(table, "a")
    for n in range(5):
        after(table, f"w{n}", ["a"])
    page, cursor = listing.list_jobs(table, "waiting", None, 3)
    rest, end = listing.list_jobs(table, "waiting", None, 3, cursor)
    assert [j.id for j in page + rest] == [f"w{n}" for n in range(5)] and end is None
    everything, _ = listing.list_jobs(table, None, None, 100)
    assert sorted(j.id for j in everything) == ["a", "w0", "w1", "w2", "w3", "w4"]


def test_an_untouched_waiting_job_stays_spec_text_through_listing_and_snapshots():
    """A child accepted while its parents are open is kept as its spec text (what makes a
    log of a million edges recover fast): counted, listed, checked and snapshotted without
    becoming a record, and thawed only when a parent's end or a read needs it."""
    from fleet.state import listing

    table = JobTable()
    enqueue(table, "a")
    enqueue(table, "b")
    after(table, "c", ["a", "b"])
    after(table, "d", ["a"], queue="other")
    cold = table._cold_waiting
    assert set(cold) == {"c", "d"} and not {"c", "d"} & set(table._jobs)
    assert table.stats()["states"][WAITING] == 2 and len(table) == 4 and "d" in table
    assert table.stats()["queues"]["other"][WAITING] == 1
    page, _ = listing.list_jobs(table, "waiting", None, 10)
    assert [(j.id, j.state) for j in page] == [("c", WAITING), ("d", WAITING)]
    assert table.validate() == [] and set(cold) == {"c", "d"}
    loaded = JobTable.load(table.dump())
    assert set(loaded._cold_waiting) == {"c", "d"} and loaded.canonical() == table.canonical()
    assert loaded.stats() == table.stats() and loaded.validate() == []
    take_and_dispatch(loaded)
    ack(loaded, "a")
    assert loaded.jobs["d"].state == PENDING and loaded.jobs["c"].state == WAITING
    assert not loaded._cold_waiting
    assert take_and_dispatch(loaded, "other") == ["d"]
    ack(loaded, "b")
    assert loaded.jobs["c"].state == PENDING and loaded.validate() == []


def test_a_dead_parent_cancels_cold_waiting_children_and_a_duplicate_id_is_refused():
    table = JobTable()
    enqueue(table, "a", max_retries=0)
    after(table, "b", ["a"])
    after(table, "c", ["b"])
    assert set(table._cold_waiting) == {"b", "c"}
    assert not after(table, "b", ["a"]) and not enqueue(table, "c")
    take_and_dispatch(table)
    fail(table, "a")
    assert [table.jobs[i].state for i in "bc"] == [CANCELLED, CANCELLED]
    assert table.jobs["c"].error == "dependency b ended cancelled"
    assert table.validate() == []


def test_a_schema_3_snapshot_of_waiting_rows_still_loads():
    """Before ``waiting_cold`` every waiting job was a row: such a snapshot loads as it is."""
    table = JobTable()
    enqueue(table, "a")
    after(table, "b", ["a"])
    table.jobs["b"]  # thawed: written as a row, as schema 3 wrote every waiting job
    data = table.dump()
    del data["waiting_cold"]
    data["version"] = 3
    loaded = JobTable.load(data)
    assert loaded.jobs["b"].state == WAITING and loaded.validate() == []


def test_a_cold_child_of_one_parent_keeps_its_parent_beside_its_spec():
    """Replay builds no ``graph.parents`` entry for an untouched child of one parent (that
    dict was a third of the cost of replaying a million edges): the parent is kept with the
    spec, shown in both jobs' views, kept so in a snapshot's ``waiting_cold`` (through its
    JSON text), and put back into ``graph.parents`` when the child thaws."""
    table = JobTable()
    enqueue(table, "a")
    after(table, "b", ["a"], allow_failure=False)
    assert "b" not in table.graph.parents and table._cold_waiting["b"].endswith("\x00a")
    view_of_a = table.waiting_view(table.jobs["a"])
    assert view_of_a["children"] == [{"id": "b", "state": WAITING}]
    assert table.validate() == []
    dumped = table.dump()
    assert dumped["graph"]["parents"] == {}
    assert dumped["waiting_cold"]["default"]["b"].endswith("\x00a")
    text = orjson.dumps({k: v for k, v in dumped.items() if k != "done_rows"})
    assert b"\x00" not in text and b"\\u0000a" in text
    loaded = JobTable.load({**orjson.loads(text), "done_rows": dumped["done_rows"]})
    assert loaded._cold_waiting["b"] == table._cold_waiting["b"]
    assert loaded.canonical() == table.canonical() and loaded.validate() == []
    assert table.waiting_view(table.jobs["b"])["waiting_on"] == ["a"]  # thaws b
    assert table.graph.parents["b"] == "a" and "b" not in table._cold_waiting
    assert table.canonical() == loaded.canonical() and table.validate() == []
