"""The intake on a real journal, without Redis: what each request is answered, what is
recorded, and that no request (unreadable, oversized, half bad) stops it."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from fleet.config import Settings
from fleet.controller.intake import Intake
from fleet.controller.journal import Journal
from fleet.controller.options import IntakeOptions
from fleet.protocol import intake as wire
from fleet.state import PENDING, WAITING
from fleet.transport import Oversized
from fleet.wal import open_log

NOW_MS = 1_000_000


@pytest.fixture
def intake(tmp_path) -> Iterator[Intake]:
    log = open_log(str(tmp_path / "data"), lock=False)
    yield Intake(Journal(log.table, log.writer),
                 IntakeOptions.of(Settings(max_message_bytes=10_000)))
    log.close()


def job(job_id: str, **fields: object) -> dict[str, object]:
    return {"id": job_id, "f": "m:f", "a": [1], "k": {}, **fields}


def answer(intake: Intake, *requests: bytes | Oversized) -> list[tuple[str, dict]]:
    return [(request_id, orjson.loads(body))
            for request_id, body in intake.handle(list(requests), NOW_MS)]


def test_each_job_of_a_request_is_accepted_duplicate_or_rejected_with_its_reason(intake):
    request = wire.encode_request("r1", 1, [job("a"), job("a"), job("b", q="no spaces")])
    [(request_id, receipt)] = answer(intake, request)
    assert request_id == "r1" and receipt["req"] == "r1"
    statuses = [result[:2] for result in receipt["results"]]
    assert statuses == [["a", "accepted"], ["a", "duplicate"], ["b", "rejected"]]
    assert "queue" in receipt["results"][2][2]
    assert intake.journal.table.get("a").state == PENDING and "b" not in intake.journal.table
    assert intake.counts == {"accepted": 1, "duplicate": 1, "rejected": 1}
    assert intake.accepted_by_queue == {"default": 1}


def test_a_request_without_a_list_of_jobs_is_rejected_whole(intake):
    [(_, receipt)] = answer(intake, orjson.dumps({"req": "r2", "jobs": {"id": "a"}}))
    assert receipt["results"] == [["", "rejected", "request has no list of jobs"]]
    assert len(intake.journal.table) == 0


def test_an_unreadable_request_is_answered_when_its_head_names_it_else_dropped(intake):
    named = b'{"req": "r3", "jobs": [NaN]}'
    [(request_id, receipt)] = answer(intake, named)
    assert request_id == "r3" and "not valid JSON" in receipt["error"]
    assert answer(intake, b"not json at all") == []
    assert intake.malformed == 2 and len(intake.journal.table) == 0


def test_an_oversized_request_is_refused_by_the_id_in_its_head(intake):
    head = wire.encode_request("r4", 1, [job("big", k={"blob": "x" * 20_000})])[:512]
    [(request_id, receipt)] = answer(intake, Oversized(size_bytes=20_100, head=head))
    assert request_id == "r4"
    assert receipt["error"].startswith("the request is 20100 bytes; at most 10000 allowed")
    assert receipt["results"] == [["", "rejected", receipt["error"]]]
    assert intake.malformed == 1 and len(intake.journal.table) == 0


def test_a_parent_must_be_known_first_and_may_come_earlier_in_the_same_request(intake):
    request = wire.encode_request("r5", 1, [job("p"), job("c", dep=["p"]),
                                            job("orphan", dep=["nobody"])])
    [(_, receipt)] = answer(intake, request)
    assert [result[1] for result in receipt["results"]] == ["accepted", "accepted", "rejected"]
    assert "unknown parent 'nobody'" in receipt["results"][2][2]
    assert intake.journal.table.get("c").state == WAITING


def test_a_job_that_trips_the_intake_is_rejected_and_its_neighbours_still_answered(
        intake, monkeypatch):
    from fleet.controller import intake as module

    real = module.validate_spec

    def validate(spec):
        if spec.get("id") == "boom":
            raise RuntimeError("a bug")
        return real(spec)

    monkeypatch.setattr(module, "validate_spec", validate)
    [(_, receipt)] = answer(intake, wire.encode_request("r6", 1, [job("ok"), job("boom")]))
    assert receipt["results"][0] == ["ok", "accepted"]
    assert receipt["results"][1] == [
        "boom", "rejected", "the controller could not handle this job (RuntimeError)"]
    assert "boom" not in intake.journal.table


def test_a_request_that_trips_after_recording_a_job_gets_no_receipt(intake, monkeypatch):
    """A rejection would deny the job already recorded (it will run); the client's timeout
    says its jobs may have been accepted."""
    real = intake.journal.record

    def record(event):
        if event[1] == "boom":
            raise RuntimeError("a bug")
        return real(event)

    monkeypatch.setattr(intake.journal, "record", record)
    assert answer(intake, wire.encode_request("r7", 1, [job("ok"), job("boom")])) == []
    assert intake.malformed == 1
    assert intake.journal.table.get("ok").state == PENDING


def test_bad_flow_fields_reject_their_job_and_the_rest_is_accepted(intake):
    request = wire.encode_request("r9", 1, [
        job("ok", py=9, ky="tenant-1", ex=60), job("p", py=12), job("k", ky=["x"]),
        job("long", ky="x" * 201), job("e", ex=-5), job("huge", ex=1e20),
        job("bool", py=True)])
    [(_, receipt)] = answer(intake, request)
    statuses = {result[0]: result[1] for result in receipt["results"]}
    assert statuses == {"ok": "accepted", "p": "rejected", "k": "rejected",
                        "long": "rejected", "e": "rejected", "huge": "rejected",
                        "bool": "rejected"}
    reasons = {result[0]: result[2] for result in receipt["results"] if len(result) > 2}
    assert "priority" in reasons["p"] and "key" in reasons["k"] and "expires_s" in reasons["e"]
    accepted = intake.journal.table.get("ok")
    assert (accepted.priority, accepted.key, accepted.expires_ms) == (9, "tenant-1",
                                                                      NOW_MS + 60_000)
