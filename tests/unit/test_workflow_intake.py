"""Dependencies at the edges: the intake's rules on parents, the dispatch message's results,
and ``fleet.current_job()`` on the worker."""

from __future__ import annotations

import orjson
import pytest

import fleet
from fleet.config import Settings
from fleet.controller.dispatch import Dispatcher
from fleet.controller.intake import Intake
from fleet.controller.journal import Journal
from fleet.controller.options import DispatchOptions, IntakeOptions
from fleet.errors import JobSpecError
from fleet.state import events as ev
from fleet.wal import open_log
from fleet.worker.imports import AllowList
from fleet.worker.runner import Runner
from fleet.worker.wire import Identity

NOW_MS = 1_700_000_000_000


@pytest.fixture()
def journal(tmp_path):
    log = open_log(str(tmp_path / "data"))
    yield Journal(log.table, log.writer)
    log.close()


def send(journal: Journal, *jobs: dict) -> list:
    (_, body), = Intake(journal, IntakeOptions.of(Settings())).handle(
        [orjson.dumps({"req": "r", "jobs": list(jobs)})], NOW_MS)
    return orjson.loads(body)["results"]


def job(job_id: str, **fields) -> dict:
    return {"id": job_id, "f": "m:f", **fields}


@pytest.mark.parametrize(("wire", "reason"), [
    (job("c", dep=["ghost"]), "unknown parent 'ghost' (never enqueued, or finished and "
                              "forgotten after retention_s=3600)"),
    (job("c", dep=["c"]), "a job cannot depend on itself"),
    (job("c", dep=["p", "p"]), "parent 'p' is named twice"),
    (job("c", dep=[f"x{n}" for n in range(10_001)]), "10001 parents; at most 10000 allowed"),
    (job("c", dep="p"), "depends_on must be a non-empty list of job ids"),
    (job("c", dep=[7]), "depends_on must be a non-empty list of job ids"),
    (job("c", dep=["p"], af="yes"), "allow_failure must be true or false"),
    (job("c", pr=True), "allow_failure and pass_results need depends_on"),
])
def test_the_intake_rejects_bad_parents_with_a_reason_per_job(journal, wire, reason):
    """Each rule on parents is a per-job rejection that names it; nothing is recorded."""
    results = send(journal, job("p"), wire)
    assert results[0] == ["p", "accepted"]
    assert results[1][1] == "rejected" and reason in results[1][2], results[1]


def test_a_parent_earlier_in_the_same_request_counts_and_a_duplicate_child_is_a_duplicate(
        journal):
    """A parent may come earlier in the same batch; a known child id answers duplicate."""
    assert send(journal, job("p"), job("c", dep=["p"])) == [["p", "accepted"],
                                                            ["c", "accepted"]]
    assert journal.table.get("c").state == "waiting"
    assert send(journal, job("c", dep=["p"])) == [["c", "duplicate"]]


def test_the_client_spec_builder_checks_depends_on():
    """build_spec takes handles and ids; a bare string is refused before sending."""
    spec = fleet.build_spec("m:f", depends_on=["a", fleet.JobSpec(id="b", func="m:f")])
    assert spec.to_wire()["dep"] == ["a", "b"]
    with pytest.raises(JobSpecError, match="depends_on must be a list"):
        fleet.build_spec("m:f", depends_on="a")


def test_parent_results_travel_last_in_the_message_and_only_for_pass_results(journal):
    """A plain job's message is unchanged; a pass_results job's carries pr, stable bytes."""
    send(journal, job("p"), job("c", dep=["p"], pr=True), job("d", dep=["p"]))
    table = journal.table
    table.take_ready("default", 1)
    journal.record(ev.dispatched("p", 1, NOW_MS + 30_000, NOW_MS))
    journal.record(ev.acked("p", 1, {"rows": 3}, {}, NOW_MS))
    dispatcher = Dispatcher(journal, DispatchOptions.of(Settings()))
    by_id = {j.id: j for j in table.take_ready("default", 2)}
    with_results = dispatcher.message(by_id["c"], 1, NOW_MS)
    assert orjson.loads(with_results)["pr"] == {"p": {"rows": 3}}
    assert with_results.endswith(b',"pr":{"p":{"rows":3}}}')
    assert dispatcher.message(by_id["c"], 1, NOW_MS) == with_results
    assert b'"pr"' not in dispatcher.message(by_id["d"], 1, NOW_MS)


@pytest.mark.parametrize("func", ["tests.e2e_jobs:whoami", "tests.e2e_jobs:whoami_async"])
def test_current_job_inside_a_sync_or_async_job(func):
    """fleet.current_job() gives id, attempt, queue, times and parent_results; None outside."""
    runner = Runner(Identity("h:1:x", "h"), AllowList(("tests.e2e_jobs",)), 5.0)
    message = {"id": "j", "n": 2, "f": func, "q": "mail", "eq": 123, "to": 10,
               "pr": {"p": 1}}
    raw, ok = runner.run(message, started_ms=1_000)
    assert ok, raw
    assert orjson.loads(raw)["r"] == {"id": "j", "attempt": 2, "queue": "mail",
                                      "enqueued_ms": 123, "deadline_ms": 11_000,
                                      "parent_results": {"p": 1}}
    assert fleet.current_job() is None


def test_the_inline_client_runs_dependencies_in_order_with_results():
    """InlineClient: a child runs after its parent with its result; a chord sees all."""
    from fleet.testing import InlineClient

    client = InlineClient()
    parent = client.enqueue("fleet.demo:sleep", 3)
    child = client.enqueue("fleet.demo:total", 1, depends_on=[parent], pass_results=True)
    assert child.result(timeout_s=5) == 4
    assert child.info()["parents"] == [{"id": parent.id, "state": "completed"}]
    chord = client.group([fleet.build_spec("fleet.demo:sleep", [n]) for n in (1, 2)],
                         then=fleet.build_spec("fleet.demo:total", []))
    assert chord.wait(timeout_s=5) == 3
    with pytest.raises(JobSpecError, match="unknown parent 'ghost'"):
        client.enqueue("fleet.demo:noop", depends_on=["ghost"])
