"""Every message kind of ``fleet.protocol`` round trip through its encode/decode pair, and the
fields docs/protocol.md shows for each are the ones the encoder writes, of the same types."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from fleet.errors import FleetError, JobNotFoundError, JobSpecError
from fleet.protocol import ack, control, dispatch, heartbeat, intake, lease
from fleet.state import JobTable
from fleet.state import events as ev

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
JOB = {"id": "task-001", "f": "fleet.demo:simulate", "q": "default", "a": [],
       "k": {"value": 42}, "to": 30, "mr": 3, "nb": 0}


def _dispatched(epoch: int = 3) -> Any:
    table = JobTable()
    table.apply(ev.booted(epoch, 1))
    table.apply(ev.enqueued({"id": "task-001", "q": "default", "f": "fleet.demo:simulate",
                             "a": [], "k": {"value": 42}}, 1_000, 30.0, 3))
    table.apply(ev.dispatched("task-001", 1, 5_000, 1_012))
    job = table.get("task-001")
    job.epoch = epoch
    return job


# -- round trips ----------------------------------------------------------------------------


def test_intake_request_round_trip_and_its_head_names_it():
    body = intake.encode_request("r1", 1_764_270_000_000, [JOB])
    assert intake.decode_request(body) == ("r1", [JOB])
    assert intake.request_id_in_head(body[:40]) == "r1"
    assert intake.decode_request(b"not json") is None
    assert intake.decode_request(b'{"req": ""}') is None
    assert intake.decode_request(orjson.dumps({"req": "x" * 201})) is None


def test_receipt_round_trip_and_a_whole_refusal_raises():
    results = [["a", intake.ACCEPTED], ["b", intake.DUPLICATE], ["c", intake.REJECTED, "bad"]]
    receipts = intake.decode_receipt(intake.encode_receipt("r1", results), ["a", "b", "c"])
    assert [(r.id, r.status, r.reason, r.durable) for r in receipts] == [
        ("a", "accepted", "", True), ("b", "duplicate", "", True), ("c", "rejected", "bad", False)]
    with pytest.raises(JobSpecError, match=r"refused 4 job\(s\) \(a, b, c, \.\.\.\): too big"):
        intake.decode_receipt(intake.encode_refusal("r1", "too big"), ["a", "b", "c", "d"])


def test_dispatch_round_trip_is_deterministic():
    job = _dispatched()
    body = dispatch.encode_dispatch(job, 1, 1_012)
    assert body == dispatch.encode_dispatch(job, 1, 1_012)
    message = dispatch.decode_dispatch(body)
    assert message is not None
    assert (message["id"], message["n"], message["ep"], message["ts"]) == ("task-001", 1, 3, 1_012)
    assert dispatch.id_and_attempt(body) == ("task-001", 1)
    assert dispatch.decode_dispatch(b'{"id": "a", "n": true}') is None
    assert dispatch.id_and_attempt(b"[]") == (None, 0)
    with_results = dispatch.decode_dispatch(dispatch.encode_dispatch(job, 1, 1_012, {"p": 1}))
    assert with_results is not None and with_results["pr"] == {"p": 1}


def test_ack_round_trip_and_its_head_names_the_attempt():
    made = ack.make_ack("task-001", 1, "ok", "host-a:1:9f1c", "host-a", 15, 20, r={"v": 84})
    body = ack.encode_ack(made)
    assert ack.decode_ack(body) == (made, "")
    assert ack.attempt_in_head(body[:60]) == {"id": "task-001", "n": 1, "o": "ok",
                                               "st": None, "ft": None}
    assert ack.decode_ack(b"NaN") == (None, "not JSON")
    assert ack.decode_ack(b'{"id": "a", "n": 1, "o": "maybe"}') == (None, "malformed")
    cleaned, _ = ack.decode_ack(b'{"id": "a", "n": 1, "o": "ok", "st": "x", "w": 5}')
    assert cleaned is not None and cleaned["st"] is None and cleaned["w"] == "5"


def test_heartbeat_round_trip_and_bad_fields_cleared():
    beat = heartbeat.encode_heartbeat("host-a:4242:9f1c", "host-a", 4242, 1, 2, ["high"], 8,
                                      [["task-001", 1, 15]], 1200, 3)
    assert heartbeat.decode_heartbeat(orjson.dumps(beat)) == (beat, True)
    assert heartbeat.worker_id_of(orjson.dumps(beat)) == "host-a:4242:9f1c"
    bad, clean = heartbeat.decode_heartbeat(orjson.dumps({**beat, "executors": 10**9,
                                                          "jobs": [["a", "one"]]}))
    assert not clean and bad is not None and bad["executors"] is None and bad["jobs"] == []
    assert heartbeat.decode_heartbeat(b"[]") == (None, False)


def test_control_request_and_reply_round_trip():
    body = control.encode_control("c1", "cancel", {"ids": ["a"]})
    assert control.decode_control(body) == ("c1", {"req": "c1", "cmd": "cancel",
                                                   "args": {"ids": ["a"]}})
    assert control.decode_control(b'{"cmd": "status"}') is None
    assert control.decode_reply(control.encode_reply(control.ok_reply({"n": 1}))) == {"n": 1}
    with pytest.raises(JobNotFoundError):
        control.decode_reply(control.encode_reply(control.error_reply("no job 'x'")))
    with pytest.raises(FleetError, match="^busy$"):
        control.decode_reply(control.encode_reply(control.error_reply("busy")))
    assert control.is_resend(control.resend_reply())
    assert not control.is_resend(control.encode_reply(control.ok_reply(None)))


def test_lease_round_trip():
    value = lease.encode_lease(3, 4242, "host-a", "t0k3n", 1_764_270_000_000)
    assert lease.decode_lease(value) == {"epoch": 3, "pid": 4242, "host": "host-a",
                                         "token": "t0k3n", "ts": 1_764_270_000_000}
    assert lease.decode_lease(None) == {} and lease.decode_lease(b"[1]") == {}


# -- docs/protocol.md against the encoders ---------------------------------------------------


def _examples() -> list[dict[str, Any]]:
    """The JSON examples of docs/protocol.md (``…`` read as 0)."""
    blocks = re.findall(r"```json\n(.*?)```", DOC, re.S)
    return [orjson.loads(re.sub(r"(?<![\"\w])…", "0", block)) for block in blocks]


def _example_with(keys: set[str]) -> dict[str, Any]:
    found = [example for example in _examples() if keys <= example.keys()]
    assert len(found) == 1, f"docs/protocol.md should show one example with {sorted(keys)}"
    return found[0]


def _same_shape(documented: dict[str, Any], encoded: dict[str, Any]) -> None:
    assert documented.keys() == encoded.keys()
    for name, value in documented.items():
        number = (int, float)
        assert (isinstance(value, number) and isinstance(encoded[name], number)
                and not isinstance(value, bool)) or type(value) is type(encoded[name]), name


def test_the_documented_intake_request_and_receipt_are_what_is_encoded():
    request = _example_with({"req", "jobs"})
    _same_shape(request, orjson.loads(intake.encode_request("r", 1, request["jobs"])))
    receipt = _example_with({"req", "results"})
    _same_shape(receipt, orjson.loads(intake.encode_receipt("r", receipt["results"])))
    statuses = {result[1] for result in receipt["results"]}
    assert statuses == set(intake.STATUSES)


def test_the_documented_dispatch_message_is_what_is_encoded():
    documented = _example_with({"id", "n", "eq", "ep"})
    _same_shape(documented, orjson.loads(dispatch.encode_dispatch(_dispatched(), 1, 1_012)))


def test_the_documented_ack_is_what_is_encoded():
    documented = _example_with({"id", "n", "o", "w", "h"})
    made = ack.make_ack("task-001", 1, "ok", "w", "h", 15, 20, r={"value": 84})
    _same_shape(documented, made)
    outcomes = set(re.findall(r"^\| `(\w+)` \| ", DOC.split("## 4.")[1].split("## 5.")[0], re.M))
    assert outcomes - {"o"} == set(ack.OUTCOMES)  # the table of outcomes, its header aside


def test_the_documented_heartbeat_is_what_is_encoded():
    documented = _example_with({"executors", "busy", "jobs"})
    _same_shape(documented, heartbeat.encode_heartbeat("w", "h", 1, 1, 2, ["q"], 8,
                                                       [["j", 1, 15]], 1, 0))


def test_the_documented_progress_of_a_running_job_is_what_is_encoded():
    documented = _example_with({"executors", "busy", "jobs"})["jobs"][1][3]
    _same_shape(documented, heartbeat.encode_progress(0.4, "copying", 2))
    entry = [["j", 1, 15, documented]]
    beat = heartbeat.encode_heartbeat("w", "h", 1, 1, 2, ["q"], 8, entry, 1, 0)
    assert heartbeat.decode_heartbeat(orjson.dumps(beat)) == (beat, True)


def test_the_documented_control_request_reply_and_lease_are_what_is_encoded():
    section = DOC.split("## 7.")[1].split("## 8.")[0]
    request = re.search(r'`RPUSH \{ns\}:control (\{.*?\})`', section)
    assert request is not None
    assert set(re.findall(r'"(\w+)":', request.group(1))) == set(
        orjson.loads(control.encode_control("c", "status", {})))
    assert '{"ok": true, "data": …}' in section and '{"ok": false, "error": "one line"}' in section
    assert set(orjson.loads(control.encode_reply(control.ok_reply(1)))) == {"ok", "data"}
    assert set(orjson.loads(control.encode_reply(control.error_reply("x")))) == {"ok", "error"}
    fields = re.search(r'`\{ns\}:controller` holds `\{([^}]*)\}`', DOC)
    assert fields is not None
    assert set(re.findall(r'"(\w+)"', fields.group(1))) == set(
        orjson.loads(lease.encode_lease(1, 1, "h", "t", 1)))
