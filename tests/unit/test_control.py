"""Control commands through their ``Desk``: each command's reply, its events, its refusals."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest

from fleet.controller import control
from fleet.controller.journal import Journal
from fleet.state import CANCELLED, COMPLETED, DEAD, IN_FLIGHT, PENDING
from fleet.state import events as ev
from fleet.wal import open_log

NOW_MS = 1_000_000


class FakeDesk:
    """A ``control.Desk`` over a real journal; records what the commands ask of it."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.malformed_control = 0
        self.running: dict[str, tuple[int, str]] = {}
        self.served: set[str] = set()
        self.interrupted: list[str] = []
        self.status_asked: list[int] = []
        self.progress: dict[tuple[str, int], dict[str, Any]] = {}

    @property
    def running_on(self) -> Mapping[str, tuple[int, str]]:
        return self.running

    @property
    def served_queues(self) -> set[str]:
        return self.served

    def status(self, now_ms: int) -> dict[str, Any]:
        self.status_asked.append(now_ms)
        return {"namespace": "test"}

    def interrupt(self, job_id: str) -> None:
        self.interrupted.append(job_id)

    def progress_of(self, job_id: str, attempt: int, now_ms: int) -> dict[str, Any] | None:
        return self.progress.get((job_id, attempt))


@pytest.fixture
def desk(tmp_path) -> Iterator[FakeDesk]:
    log = open_log(str(tmp_path / "data"), lock=False)
    yield FakeDesk(Journal(log.table, log.writer))
    log.close()


def enqueue(desk: FakeDesk, job_id: str, queue: str = "default", at_ms: int = 0) -> None:
    desk.journal.record(ev.enqueued({"id": job_id, "q": queue, "f": "m:f", "a": [], "k": {}},
                                    at_ms, 30.0, 3))


def dispatch(desk: FakeDesk, job_id: str, attempt: int = 1) -> None:
    desk.journal.record(ev.dispatched(job_id, attempt, NOW_MS + 30_000, NOW_MS - 10))


def kill(desk: FakeDesk, job_id: str, at_ms: int) -> None:
    """Take ``job_id`` to the dead-letter set, finished at ``at_ms``."""
    enqueue(desk, job_id)
    dispatch(desk, job_id)
    desk.journal.record(ev.failed(job_id, 1, "boom", {}, 0, True, at_ms))


def ask(desk: FakeDesk, cmd: Any, **args: Any) -> dict[str, Any]:
    """Send one control request through ``handle_requests``; returns its decoded reply."""
    request = orjson.dumps({"req": "r1", "cmd": cmd, "args": args})
    (request_id, reply), = control.handle_requests(desk, [request], NOW_MS)
    assert request_id == "r1"
    return orjson.loads(reply)


def test_status_replies_with_the_desks_status_document_at_the_request_time(desk):
    """``status`` asks the desk for its document at ``now_ms`` and returns it as data."""
    assert ask(desk, "status") == {"ok": True, "data": {"namespace": "test"}}
    assert desk.status_asked == [NOW_MS]


def test_job_names_the_worker_running_its_current_attempt_only(desk):
    """``job`` returns the record; ``running_on`` is the worker reporting the current
    attempt, None when a worker reports another attempt or the job is not in flight."""
    enqueue(desk, "a")
    dispatch(desk, "a")
    desk.running = {"a": (1, "w1")}
    info = ask(desk, "job", id="a")["data"]
    assert info["id"] == "a" and info["state"] == IN_FLIGHT and info["running_on"] == "w1"
    assert info["parents"] == [] and info["children"] == []
    desk.running = {"a": (0, "w1")}
    assert ask(desk, "job", id="a")["data"]["running_on"] is None
    enqueue(desk, "b")
    desk.running = {"b": (0, "w1")}
    assert ask(desk, "job", id="b")["data"]["running_on"] is None


def test_job_shows_the_progress_of_its_running_attempt_only(desk):
    """``job`` carries the latest progress of the attempt a worker runs; none for a job no
    worker reports yet, and none once the attempt has ended."""
    enqueue(desk, "a")
    dispatch(desk, "a")
    desk.progress[("a", 1)] = {"fraction": 0.4, "message": "copying", "age_s": 1.2}
    assert ask(desk, "job", id="a")["data"]["progress"] is None  # no worker reports it
    desk.running = {"a": (1, "w1")}
    assert ask(desk, "job", id="a")["data"]["progress"] == {
        "fraction": 0.4, "message": "copying", "age_s": 1.2}
    desk.journal.record(ev.acked("a", 1, None, {}, NOW_MS))
    assert ask(desk, "job", id="a")["data"]["progress"] is None


def test_job_of_an_unknown_id_is_refused_as_not_found(desk):
    """An id the table does not hold is an ``ok: false`` reply that says so."""
    reply = ask(desk, "job", id="nope")
    assert reply["ok"] is False and "no job 'nope'" in reply["error"]


def test_jobs_lists_a_page_by_state_with_the_worker_of_each(desk):
    """``jobs`` lists the jobs in a state, with the reporting worker as ``worker``."""
    for job_id in ("a", "b", "c"):
        enqueue(desk, job_id)
    dispatch(desk, "b")
    desk.running = {"b": (1, "w2")}
    data = ask(desk, "jobs", state=IN_FLIGHT)["data"]
    assert [(j["id"], j["worker"]) for j in data["jobs"]] == [("b", "w2")]
    assert data["cursor"] is None
    pending = ask(desk, "jobs", state=PENDING)["data"]["jobs"]
    assert sorted(j["id"] for j in pending) == ["a", "c"]


@pytest.mark.parametrize("args", [{"limit": "10"}, {"limit": True}, {"state": 3},
                                  {"state": "sleeping"}, {"limit": 0}, {"cursor": "garbage"}])
def test_jobs_refuses_arguments_of_the_wrong_type_or_range(desk, args):
    """A non-integer limit, a non-string or unknown state, a limit out of range or a bad
    cursor is an ``ok: false`` reply, not a crash."""
    reply = ask(desk, "jobs", **args)
    assert reply["ok"] is False and reply["error"]


def test_dead_list_returns_dead_jobs_oldest_first_up_to_the_limit(desk):
    """``dead_list`` shows each dead job's failure, oldest first; ``limit`` 0 means all."""
    kill(desk, "old", NOW_MS - 5000)
    kill(desk, "new", NOW_MS - 1000)
    enqueue(desk, "alive")
    everything = ask(desk, "dead_list", limit=0)["data"]
    assert [d["id"] for d in everything] == ["old", "new"]
    assert everything[0]["error"] == "boom" and everything[0]["attempts"] == 1
    assert [d["id"] for d in ask(desk, "dead_list", limit=1)["data"]] == ["old"]


def test_dead_retry_retries_the_dead_and_names_the_others(desk):
    """``dead_retry`` records RETRIED for each dead job named and lists the rest as
    ``not_dead``; ``all`` retries every dead job."""
    kill(desk, "d1", NOW_MS - 10)
    kill(desk, "d2", NOW_MS - 10)
    enqueue(desk, "p")
    reply = ask(desk, "dead_retry", ids=["d1", "p", "ghost"])["data"]
    assert reply == {"retried": ["d1"], "not_dead": ["p", "ghost"]}
    assert desk.journal.table.get("d1").state == PENDING
    assert ask(desk, "dead_retry", all=True)["data"] == {"retried": ["d2"], "not_dead": []}
    assert desk.journal.table.get("d2").state == PENDING


@pytest.mark.parametrize("ids", [None, "d1", [1, 2], ["a", None]])
def test_dead_retry_and_cancel_refuse_ids_that_are_not_a_list_of_strings(desk, ids):
    """``ids`` must be a list of job ids: anything else is refused and records nothing."""
    pending = len(desk.journal.pending)
    for cmd in ("dead_retry", "cancel"):
        reply = ask(desk, cmd, ids=ids)
        assert reply == {"ok": False, "error": "ids must be a list of job ids"}
    assert len(desk.journal.pending) == pending


def test_dead_purge_forgets_only_dead_jobs_older_than_asked(desk):
    """``dead_purge`` compacts the dead jobs finished ``older_than_s`` ago or earlier."""
    kill(desk, "old", NOW_MS - 60_000)
    kill(desk, "new", NOW_MS - 1000)
    assert ask(desk, "dead_purge", older_than_s=30)["data"] == {"purged": 1}
    assert desk.journal.table.get("old") is None
    assert desk.journal.table.get("new").state == DEAD
    assert ask(desk, "dead_purge", older_than_s=3600)["data"] == {"purged": 0}


def test_cancel_ends_live_jobs_and_interrupts_only_the_running_one(desk):
    """``cancel`` cancels pending and in-flight jobs, asks the desk to interrupt the one in
    flight, and lists finished or unknown ids as not cancellable."""
    enqueue(desk, "p")
    enqueue(desk, "f")
    dispatch(desk, "f")
    enqueue(desk, "done")
    dispatch(desk, "done")
    desk.journal.record(ev.acked("done", 1, None, {}, NOW_MS - 5))
    reply = ask(desk, "cancel", ids=["p", "f", "done", "ghost"])["data"]
    assert reply == {"cancelled": ["p", "f"], "not_cancellable": ["done", "ghost"]}
    assert desk.interrupted == ["f"]
    table = desk.journal.table
    assert (table.get("p").state, table.get("f").state) == (CANCELLED, CANCELLED)
    assert table.get("done").state == COMPLETED


def test_pause_and_resume_record_the_queue_and_say_whether_it_is_in_use(desk):
    """``pause``/``resume`` change the table's paused set; ``in_use`` is true for a queue
    that holds jobs or that a live worker serves, false for one nobody uses (a typo)."""
    enqueue(desk, "a", queue="busy")
    desk.served = {"served"}
    assert ask(desk, "pause", queue="busy")["data"] == {"paused": "busy", "in_use": True}
    assert ask(desk, "pause", queue="served")["data"] == {"paused": "served", "in_use": True}
    assert ask(desk, "pause", queue="typo")["data"] == {"paused": "typo", "in_use": False}
    assert desk.journal.table.paused == {"busy", "served", "typo"}
    assert ask(desk, "resume", queue="typo")["data"] == {"resumed": "typo", "in_use": False}
    assert desk.journal.table.paused == {"busy", "served"}


@pytest.mark.parametrize("queue", [None, "", "a b", "x" * 65, 7])
def test_pause_and_resume_refuse_a_queue_name_that_cannot_exist(desk, queue):
    """A queue name outside ``[A-Za-z0-9_.-]{1,64}`` is refused; nothing is recorded."""
    for cmd in ("pause", "resume"):
        reply = ask(desk, cmd, queue=queue)
        assert reply["ok"] is False and "queue must match" in reply["error"]
    assert desk.journal.pending == []


def test_unknown_command_is_refused_by_name(desk):
    """A command the controller does not know is refused, naming it."""
    assert ask(desk, "reboot") == {"ok": False, "error": "unknown command 'reboot'"}


def test_requests_without_a_request_id_are_counted_and_get_no_reply(desk):
    """Not JSON, not an object, or with no usable ``req``: no reply can be addressed, so the
    request is counted on the desk; the well-formed request beside them is answered."""
    bad = [b"not json", orjson.dumps([1]), orjson.dumps({"cmd": "status"}),
           orjson.dumps({"req": "", "cmd": "status"}),
           orjson.dumps({"req": "x" * 201, "cmd": "status"})]
    good = orjson.dumps({"req": "ok", "cmd": "status"})
    replies = control.handle_requests(desk, [*bad[:2], good, *bad[2:]], NOW_MS)
    assert [request_id for request_id, _ in replies] == ["ok"]
    assert desk.malformed_control == len(bad)


def test_args_that_are_not_an_object_are_read_as_no_arguments(desk):
    """``args`` of the wrong type count as none: ``status`` still answers, ``job`` finds no
    id."""
    for args in ([1], "x", None):
        request = orjson.dumps({"req": "r", "cmd": "status", "args": args})
        (_, reply), = control.handle_requests(desk, [request], NOW_MS)
        assert orjson.loads(reply)["ok"] is True
    request = orjson.dumps({"req": "r", "cmd": "job", "args": [1]})
    (_, reply), = control.handle_requests(desk, [request], NOW_MS)
    assert orjson.loads(reply)["ok"] is False
