"""An exception while the controller handles one item (an intake request, one of its jobs, an
ack, a control request) rejects that item; the step completes, the other items of the step
are applied, and the next step works (issue 12: no content of a message may stop the
controller)."""

from __future__ import annotations

from typing import Any

import fakeredis
import orjson
import pytest

from fleet.config import Settings
from fleet.controller import Controller, control, intake
from fleet.keys import Keys
from fleet.state import COMPLETED, IN_FLIGHT, PENDING
from fleet.state import events as ev

KEYS = Keys("fleet")
START_MS = 1_764_000_000_000


class Clock:
    """The controller's run clock, moved by the test."""

    def __init__(self) -> None:
        self.now_ms = START_MS

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture()
def clock():
    return Clock()


@pytest.fixture()
def redis_client():
    return fakeredis.FakeRedis()


@pytest.fixture()
def controller(tmp_path, clock, redis_client):
    ctl = Controller(Settings(data_dir=str(tmp_path / "data"), metrics_port=0),
                     redis_client=redis_client, clock=clock, fork_snapshots=False)
    ctl.start(serve_metrics=False)
    yield ctl
    ctl.close()


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected fault")


def settle(ctl: Controller) -> None:
    """Step until a step finds nothing to do: a step that worked read the next inbox along
    with its write, before the test pushes anything more."""
    for _ in range(5):
        if not ctl.step():
            return
    raise AssertionError("the controller never ran out of work")


def step_a_second_later(ctl: Controller, clock: Clock) -> None:
    """One step a second on: past the heartbeat cadence, so counters reach Prometheus."""
    clock.now_ms += 1000
    assert ctl.step()


def malformed_metric(ctl: Controller, source: str) -> float | None:
    return ctl.metrics.registry.get_sample_value("fleet_malformed_messages_total",
                                                 {"source": source})


def job(job_id: str) -> dict[str, Any]:
    return {"id": job_id, "f": "tests.jobs:add", "a": [1, 2]}


def send_request(redis_client: Any, request_id: str, job_ids: list[str]) -> None:
    body = {"req": request_id, "jobs": [job(job_id) for job_id in job_ids]}
    redis_client.rpush(KEYS.intake, orjson.dumps(body))


def receipt(redis_client: Any, request_id: str) -> dict[str, Any] | None:
    raw = redis_client.lpop(KEYS.receipt(request_id))
    return None if raw is None else orjson.loads(raw)


def states(ctl: Controller) -> dict[str, str]:
    return {job_id: record.state for job_id, record in ctl.journal.table.jobs.items()}


# -- intake ---------------------------------------------------------------------------------


def test_an_intake_request_whose_handling_raises_is_rejected_by_its_id_and_the_others_accepted(
        controller, clock, redis_client, monkeypatch):
    """The request that trips is answered ``rejected`` (its client does not wait for a
    timeout), counted as malformed and trimmed; the requests beside it in the same step are
    accepted, and the next step accepts a new one."""
    handle_one = controller.intake._handle_one

    def faulty(raw: bytes, now_ms: int) -> Any:
        if b'"poison"' in raw:
            raise RuntimeError("injected fault")
        return handle_one(raw, now_ms)

    monkeypatch.setattr(controller.intake, "_handle_one", faulty)
    send_request(redis_client, "before", ["a"])
    send_request(redis_client, "poison", ["p"])
    send_request(redis_client, "after", ["b"])
    assert controller.step()
    assert receipt(redis_client, "before")["results"] == [["a", "accepted"]]
    assert receipt(redis_client, "after")["results"] == [["b", "accepted"]]
    refused = receipt(redis_client, "poison")
    assert refused["results"][0][1] == "rejected"
    assert "could not handle" in refused["error"] and "RuntimeError" in refused["error"]
    assert redis_client.llen(KEYS.intake) == 0
    assert "p" not in controller.journal.table.jobs
    assert controller.intake.malformed == 1
    settle(controller)
    send_request(redis_client, "next", ["c"])
    step_a_second_later(controller, clock)
    assert receipt(redis_client, "next")["results"] == [["c", "accepted"]]
    assert malformed_metric(controller, "intake") == 1


def test_a_job_whose_handling_raises_is_rejected_and_the_rest_of_its_request_accepted(
        controller, clock, redis_client, monkeypatch):
    """One job of a request trips validation with an exception nobody foresaw: that job is
    ``rejected`` with the reason, the jobs before and after it in the same request are
    accepted (and answered: none is recorded without a receipt), and the next step works."""
    validate = intake.validate_spec

    def faulty(wire: Any) -> Any:
        if isinstance(wire, dict) and wire.get("id") == "p":
            raise KeyError("injected fault")
        return validate(wire)

    monkeypatch.setattr(intake, "validate_spec", faulty)
    send_request(redis_client, "mixed", ["a", "p", "b"])
    assert controller.step()
    results = receipt(redis_client, "mixed")["results"]
    assert [r[:2] for r in results] == [["a", "accepted"], ["p", "rejected"], ["b", "accepted"]]
    assert "could not handle" in results[1][2] and "KeyError" in results[1][2]
    assert set(controller.journal.table.jobs) == {"a", "b"}
    assert controller.intake.counts == {"accepted": 2, "duplicate": 0, "rejected": 1}
    monkeypatch.setattr(intake, "validate_spec", validate)
    settle(controller)
    send_request(redis_client, "again", ["p", "a"])
    step_a_second_later(controller, clock)
    assert receipt(redis_client, "again")["results"] == [["p", "accepted"], ["a", "duplicate"]]


# -- acks -----------------------------------------------------------------------------------


def dispatch(ctl: Controller, redis_client: Any, job_ids: list[str]) -> dict[str, int]:
    """Enqueue and dispatch the jobs; pop their messages as a worker would: id -> attempt."""
    for job_id in job_ids:
        spec = {"id": job_id, "q": "default", "f": "tests.jobs:add", "a": [1, 2], "k": {}}
        ctl.journal.record(ev.enqueued(spec, ctl.clock(), 30.0, 3))
    assert ctl.step()
    settle(ctl)
    attempts = {}
    while (raw := redis_client.lpop(KEYS.ready("default"))) is not None:
        message = orjson.loads(raw)
        attempts[message["id"]] = message["n"]
    assert sorted(attempts) == sorted(job_ids)
    return attempts


def ack(job_id: str, attempt: int, result: Any) -> bytes:
    return orjson.dumps({"id": job_id, "n": attempt, "o": "ok", "r": result, "w": "w1",
                         "h": "h1", "st": START_MS, "ft": START_MS + 1})


def test_an_ack_whose_handling_raises_is_counted_malformed_and_the_others_applied(
        controller, clock, redis_client, monkeypatch):
    """The ack that trips is dropped, counted as malformed and trimmed (it is never read
    again); its job stays in flight, untouched. The acks beside it complete their jobs, and
    the next step applies the same job's ack once it no longer trips."""
    attempts = dispatch(controller, redis_client, ["a", "p", "b"])
    handle_ack = controller.reconciler._handle_ack

    def faulty(raw: bytes, now_ms: int) -> None:
        if b'"p"' in raw:
            raise RuntimeError("injected fault")
        handle_ack(raw, now_ms)

    monkeypatch.setattr(controller.reconciler, "_handle_ack", faulty)
    redis_client.rpush(KEYS.acks, *(ack(j, attempts[j], j.upper()) for j in ("a", "p", "b")))
    assert controller.step()
    table = controller.journal.table
    assert states(controller) == {"a": COMPLETED, "p": IN_FLIGHT, "b": COMPLETED}
    assert table.get("a").result == "A" and table.get("b").result == "B"
    assert table.get("p").attempt == attempts["p"] and table.get("p").failures == 0
    assert controller.reconciler.malformed_acks == 1
    assert controller.reconciler.stale_acks == 0
    assert redis_client.llen(KEYS.acks) == 0
    monkeypatch.setattr(controller.reconciler, "_handle_ack", handle_ack)
    settle(controller)
    redis_client.rpush(KEYS.acks, ack("p", attempts["p"], "P"))
    step_a_second_later(controller, clock)
    assert table.get("p").state == COMPLETED and table.get("p").result == "P"
    assert malformed_metric(controller, "acks") == 1


# -- control --------------------------------------------------------------------------------


def send_control(redis_client: Any, request_id: str, cmd: str, **args: Any) -> None:
    redis_client.rpush(KEYS.control, orjson.dumps({"req": request_id, "cmd": cmd,
                                                   "args": args}))


def reply(redis_client: Any, request_id: str) -> dict[str, Any] | None:
    raw = redis_client.lpop(KEYS.reply(request_id))
    return None if raw is None else orjson.loads(raw)


def pending(ctl: Controller, job_ids: list[str]) -> None:
    """Jobs due in a day: they stay pending, whatever the steps do."""
    for job_id in job_ids:
        spec = {"id": job_id, "q": "default", "f": "tests.jobs:add", "a": [1, 2], "k": {},
                "nb": ctl.clock() + 86_400_000}
        ctl.journal.record(ev.enqueued(spec, ctl.clock(), 30.0, 3))
    ctl.journal.commit()


def test_a_control_command_that_raises_is_answered_not_ok_and_the_others_run(
        controller, clock, redis_client, monkeypatch):
    """A command that trips on one request is answered ``ok: false`` saying the controller
    could not carry it out; the requests beside it run and are answered, and the next step
    runs the same command again."""
    pending(controller, ["a", "p", "b"])
    cancel = control.COMMANDS["cancel"]

    def faulty(ctx: Any, args: dict[str, Any], now_ms: int) -> Any:
        if args.get("ids") == ["p"]:
            raise RuntimeError("injected fault")
        return cancel(ctx, args, now_ms)

    monkeypatch.setitem(control.COMMANDS, "cancel", faulty)
    send_control(redis_client, "c-a", "cancel", ids=["a"])
    send_control(redis_client, "c-p", "cancel", ids=["p"])
    send_control(redis_client, "c-b", "cancel", ids=["b"])
    controller.step()
    assert reply(redis_client, "c-a") == {"ok": True, "data": {"cancelled": ["a"],
                                                              "not_cancellable": []}}
    assert reply(redis_client, "c-p") == {
        "ok": False, "error": "the controller could not carry this out (RuntimeError)"}
    assert reply(redis_client, "c-b")["data"]["cancelled"] == ["b"]
    assert states(controller) == {"a": "cancelled", "p": PENDING, "b": "cancelled"}
    assert redis_client.llen(KEYS.control) == 0
    monkeypatch.setitem(control.COMMANDS, "cancel", cancel)
    settle(controller)
    send_control(redis_client, "c-p2", "cancel", ids=["p"])
    step_a_second_later(controller, clock)
    assert reply(redis_client, "c-p2")["data"]["cancelled"] == ["p"]


def test_a_control_request_whose_handling_raises_is_counted_and_the_others_answered(
        controller, clock, redis_client, monkeypatch):
    """A request that trips the handler itself (outside any command) is counted as
    malformed, logged and trimmed, with no reply; the requests beside it are answered and
    the next step answers again."""
    pending(controller, ["a"])
    handle_one = control._handle_one

    def faulty(ctx: Any, raw: Any, now_ms: int) -> Any:
        if b'"poison"' in raw:
            raise RuntimeError("injected fault")
        return handle_one(ctx, raw, now_ms)

    monkeypatch.setattr(control, "_handle_one", faulty)
    send_control(redis_client, "before", "job", id="a")
    send_control(redis_client, "poison", "cancel", ids=["a"])
    send_control(redis_client, "after", "status")
    controller.step()
    assert reply(redis_client, "before")["data"]["state"] == PENDING
    assert reply(redis_client, "after")["data"]["states"]["pending"] == 1
    assert reply(redis_client, "poison") is None
    assert controller.journal.table.get("a").state == PENDING
    assert controller.malformed_control == 1
    assert redis_client.llen(KEYS.control) == 0
    settle(controller)
    send_control(redis_client, "next", "job", id="a")
    step_a_second_later(controller, clock)
    assert reply(redis_client, "next")["data"]["id"] == "a"
    assert malformed_metric(controller, "control") == 1
