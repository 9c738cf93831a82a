"""Limits on what the controller takes in: depth, size, bytes per read, poison acks."""

from __future__ import annotations

import random

import fakeredis
import orjson
import pytest
import redis

from fleet.client import Client
from fleet.config import Settings
from fleet.controller import control
from fleet.controller.intake import Intake
from fleet.controller.journal import Journal
from fleet.controller.liveness import Liveness
from fleet.controller.options import IntakeOptions, ReconcileOptions
from fleet.controller.reconcile import Reconciler
from fleet.errors import JobSpecError, NoReceiptError
from fleet.job import MAX_JSON_DEPTH, JobSpec, validate_spec
from fleet.keys import Keys
from fleet.protocol.intake import REQUEST_BYTES, sealed_requests
from fleet.protocol.signing import DISPATCH, INTAKE, Seal
from fleet.state import events as ev
from fleet.transport import ControllerWire, Oversized, ReadLimits
from fleet.wal import open_log

NOW_MS = 1_700_000_000_000
KEYS = Keys("fleet")


def nested(depth: int, leaf: object = 1) -> object:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@pytest.fixture()
def journal(tmp_path):
    log = open_log(str(tmp_path / "data"))
    yield Journal(log.table, log.writer)
    log.close()


def in_flight(journal: Journal, job_id: str) -> None:
    spec = {"id": job_id, "q": "default", "f": "m:f", "a": [], "k": {}}
    journal.record(ev.enqueued(spec, NOW_MS, 30.0, 3))
    journal.record(ev.dispatched(job_id, 1, NOW_MS + 30_000, NOW_MS))


# -- depth ----------------------------------------------------------------------------------

def test_kwargs_at_the_depth_limit_pass_and_one_level_deeper_are_refused():
    """MAX_JSON_DEPTH levels of kwargs are fine; one more is a JobSpecError naming the limit."""
    wire = {"id": "j", "f": "m:f", "k": {"v": nested(MAX_JSON_DEPTH - 1)}}
    validate_spec(wire)
    with pytest.raises(JobSpecError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
        validate_spec({**wire, "k": {"v": nested(MAX_JSON_DEPTH)}})


@pytest.mark.parametrize("depth", [252, 253, 300])
def test_kwargs_near_and_past_the_encoder_limit_are_a_spec_error_not_a_type_error(depth):
    """Depths at which orjson itself fails (the frame's wrapping) are refused with a reason."""
    with pytest.raises(JobSpecError, match="nested deeper"):
        validate_spec({"id": "j", "f": "fleet.demo:simulate", "k": {"v": nested(depth)}})


def test_integer_past_64_bits_in_args_is_refused():
    """A Python int orjson cannot encode is a JobSpecError, not a TypeError."""
    with pytest.raises(JobSpecError, match="not encodable"):
        validate_spec({"id": "j", "f": "m:f", "a": [2**70]})


def test_client_enqueue_many_refuses_a_300_deep_payload_with_a_job_spec_error():
    """The client checks depth before sending: a JobSpecError, and nothing reaches Redis."""
    redis_client = fakeredis.FakeRedis()
    client = Client(redis_client=redis_client)
    spec = JobSpec(id="deep", func="fleet.demo:simulate", kwargs={"v": nested(300)})
    with pytest.raises(JobSpecError, match="deep"):
        client.enqueue_many([spec])
    spec = JobSpec(id="deep", func="fleet.demo:simulate", kwargs={"v": nested(252)})
    with pytest.raises(JobSpecError, match="nested deeper"):
        client.enqueue_many([spec])
    assert redis_client.llen(KEYS.intake) == 0


def test_client_cuts_requests_by_bytes_as_well_as_by_count():
    """Jobs of 70 KB go in requests of about REQUEST_BYTES, not 1,000 to a request."""
    wires = [{"id": f"j{n}", "f": "m:f", "k": {"blob": "x" * 70_000}} for n in range(300)]
    requests = sealed_requests(wires, Seal((), INTAKE, "fleet"))
    assert len(requests) > 2
    assert all(len(body) <= REQUEST_BYTES for _, _, body in requests)
    assert [job_id for _, ids, _ in requests for job_id in ids] == [w["id"] for w in wires]


def test_client_cuts_requests_under_a_lowered_max_message_bytes_seal_included():
    """With max_message_bytes lowered in its settings (as on the controller), the client
    sends no request over it, its seal's head included; a job too big for it alone goes in
    a request of its own, for the controller to refuse with its reason."""
    redis_client = fakeredis.FakeRedis()
    client = Client(redis_client=redis_client, receipt_timeout_s=0.1,
                    settings=Settings(max_message_bytes=256 * 1024, signing_key="k" * 32))
    specs = [JobSpec(id=f"j{n}", func="m:f", kwargs={"blob": "x" * 10_000})
             for n in range(100)]
    specs.insert(50, JobSpec(id="big", func="m:f", kwargs={"blob": "y" * 300_000}))
    redis_client.set(KEYS.controller, b"x")
    with pytest.raises(NoReceiptError):
        client.enqueue_many(specs)
    bodies = redis_client.lrange(KEYS.intake, 0, -1)
    assert len(bodies) > 4
    big = [body for body in bodies if b'"id":"big"' in body]
    assert len(big) == 1 and b'"id":"j' not in big[0]
    assert all(len(body) <= 256 * 1024 for body in bodies if body not in big)


# -- reads bounded by bytes ----------------------------------------------------------------

def _wire(url_or_client: object, limits: ReadLimits) -> tuple[ControllerWire, redis.Redis]:
    client = (redis.Redis.from_url(url_or_client) if isinstance(url_or_client, str)
              else url_or_client)
    return ControllerWire(client, KEYS, limits), client


@pytest.mark.parametrize("server", ["redis", "no-scripts"])
def test_a_read_takes_messages_up_to_the_byte_budget_and_always_one(server, request):
    """Bytes, not only counts, bound a read; a message over the budget still comes alone,
    with the Lua read and with the plain LRANGE one of a server that runs no scripts."""
    target = (request.getfixturevalue("redis_url") if server == "redis"
              else fakeredis.FakeRedis())
    wire, client = _wire(target, ReadLimits(batch_bytes=1000, max_message_bytes=5000))
    if server == "no-scripts":
        wire._scripts = False
    else:
        assert wire._can_run_scripts()
    client.rpush(KEYS.acks, *[b"a" * 300] * 10)
    assert len(wire.read(64, 2000, []).acks) == 3
    client.delete(KEYS.acks)
    client.rpush(KEYS.acks, b"b" * 4000, b"c")
    assert wire.read(64, 2000, []).acks == [b"b" * 4000]
    client.rpush(KEYS.intake, *[b"%d" % n for n in range(150)])
    assert wire.read(70, 2000, []).intake == [b"%d" % n for n in range(70)]


@pytest.mark.parametrize("server", ["redis", "no-scripts"])
def test_a_message_over_the_limit_arrives_as_its_size_and_first_bytes(server, request):
    """An oversized message is not read whole: the controller gets its size and its head."""
    target = (request.getfixturevalue("redis_url") if server == "redis"
              else fakeredis.FakeRedis())
    wire, client = _wire(target, ReadLimits(batch_bytes=10_000, max_message_bytes=5000,
                                            head_bytes=20))
    if server == "no-scripts":
        wire._scripts = False
    big = b'{"req": "r1", "jobs": [' + b" " * 6000 + b"]}"
    client.rpush(KEYS.intake, b"small", big, b"after")
    assert wire.read(64, 2000, []).intake == [b"small", Oversized(len(big), big[:20]),
                                              b"after"]


# -- intake ---------------------------------------------------------------------------------

def test_oversized_intake_request_gets_a_rejected_receipt_naming_the_limit(journal):
    """The request id is found in the head, and the receipt says why, as an error."""
    intake = Intake(journal, IntakeOptions.of(Settings(max_message_bytes=1000)))
    receipts = intake.handle([Oversized(5000, b'{"req": "r-big", "jobs": [{"id": "a"')], NOW_MS)
    assert [request_id for request_id, _ in receipts] == ["r-big"]
    body = orjson.loads(receipts[0][1])
    assert "5000 bytes; at most 1000 allowed" in body["error"]
    assert body["results"][0][1] == "rejected"
    assert intake.malformed == 1 and journal.pending == []


def test_client_turns_a_refused_request_into_a_job_spec_error(monkeypatch):
    """A receipt with an ``error`` (the request unread) is a JobSpecError with the reason."""
    client = Client(redis_client=fakeredis.FakeRedis(), receipt_timeout_s=1)
    monkeypatch.setattr(client.wire, "wait", lambda key, timeout_s: orjson.dumps(
        {"req": "r", "error": "the request is too big", "results": [["", "rejected", "x"]]}))
    with pytest.raises(JobSpecError, match="refused 1 job.*too big"):
        client.enqueue("m:f", 1)


def test_252_deep_kwargs_for_the_demo_function_are_rejected_at_intake(journal):
    """The raw request of the issue: answered ``rejected`` with the reason, nothing recorded."""
    intake = Intake(journal, IntakeOptions.of(Settings()))
    request = (b'{"req": "r", "jobs": [{"id": "deep", "f": "fleet.demo:simulate", "k": {"v": '
               + b"[" * 251 + b"1" + b"]" * 251 + b"}}]}")
    (_, body), = intake.handle([request], NOW_MS)
    assert orjson.loads(body)["results"] == [
        ["deep", "rejected", f"job deep: args and kwargs are nested deeper than "
                             f"{MAX_JSON_DEPTH} levels"]]
    assert journal.pending == []


# -- acks -----------------------------------------------------------------------------------

def _reconciler(journal: Journal, **settings: object) -> Reconciler:
    config = Settings(**settings)
    return Reconciler(journal, ReconcileOptions.of(config), random.Random(1),
                      Liveness(int(config.heartbeat_s * 1000)))


def test_ack_with_a_result_too_deep_is_recorded_as_a_final_failed_attempt(journal):
    """The poison ack is counted, and the job still ends exactly once: dead, with the reason."""
    in_flight(journal, "j")
    reconciler = _reconciler(journal)
    reconciler.handle_acks([orjson.dumps({"id": "j", "n": 1, "o": "ok", "r": nested(200)})],
                           NOW_MS)
    job = journal.table.get("j")
    assert job.state == "dead"
    assert job.error.startswith("ResultRefused: the result is nested deeper than")
    assert reconciler.malformed_acks == 1 and reconciler.stale_acks == 0
    journal.commit()


def test_ack_over_the_size_limit_is_a_failed_attempt_named_by_its_head(journal):
    """An oversized ack, unread but for its head, still ends its attempt: a failure."""
    in_flight(journal, "j")
    reconciler = _reconciler(journal, max_message_bytes=1000)
    reconciler.handle_acks([Oversized(9000, b'{"id":"j","n":1,"o":"ok","r":"xxxx')], NOW_MS)
    job = journal.table.get("j")
    assert job.state == "dead"
    assert "the ack is 9000 bytes; at most 1000 allowed" in job.error


@pytest.mark.parametrize("raw", [
    b'{"id": "j", "n": 1, "o": "ok", "r": NaN}',
    b'{"id": "j", "n": 1, "o": "ok", "r": [Infinity]}',
    b'{"id": "j", "n": 1, "o": "ok", "r": 1e400}',
    b'{"id": "j", "n": 1, "o": "ok", "r": "\\ud800"}',
    b'{"id": "j", "n": 1, "o": "ok", "r": ' + b"[" * 1100 + b"]" * 1100 + b"}",
])
def test_ack_that_is_not_strict_json_is_dropped_and_counted(journal, raw):
    """NaN, Infinity, overflowing numbers, lone surrogates, past the parser's depth: dropped."""
    in_flight(journal, "j")
    reconciler = _reconciler(journal)
    reconciler.handle_acks([raw], NOW_MS)
    assert reconciler.malformed_acks == 1
    assert journal.table.get("j").state == "in_flight"


def test_ack_with_a_huge_integer_result_completes_and_commits(journal):
    """orjson reads an integer past 64 bits as a float: the job completes, the log encodes it."""
    in_flight(journal, "j")
    _reconciler(journal).handle_acks([b'{"id":"j","n":1,"o":"ok","r":123456789012345678901234}'],
                                     NOW_MS)
    assert journal.table.get("j").state == "completed"
    assert journal.commit()


def test_ack_fields_of_hostile_types_are_recorded_harmlessly(journal):
    """A deep error, a list as worker id: the failure is recorded with plain text."""
    in_flight(journal, "j")
    ack = {"id": "j", "n": 1, "o": "fail", "e": nested(250), "w": nested(250), "h": "h" * 5000}
    _reconciler(journal, max_retries=0).handle_acks([orjson.dumps(ack)], NOW_MS)
    job = journal.table.get("j")
    assert job.error == "(an error of type list, not text)"
    assert journal.commit()


# -- control --------------------------------------------------------------------------------

class _Ctx:
    malformed_control = 0

    def __init__(self, journal: Journal) -> None:
        self.journal = journal


@pytest.mark.parametrize(("cmd", "args"), [("dead_purge", {"older_than_s": "inf"}),
                                           ("dead_list", {"limit": [1]})])
def test_control_request_with_arguments_out_of_range_is_answered_not_fatal(journal, cmd, args):
    """An argument that overflows or has the wrong type is an ``ok: false`` reply."""
    request = orjson.dumps({"req": "c", "cmd": cmd, "args": args})
    (_, reply), = control.handle_requests(_Ctx(journal), [request], NOW_MS)
    assert orjson.loads(reply)["ok"] is False


def test_control_request_with_an_unhashable_command_is_answered_unknown(journal):
    """The fuzz test's find: a list as ``cmd`` is an unknown command, not a TypeError."""
    request = orjson.dumps({"req": "c", "cmd": [1, 2], "args": {}})
    (_, reply), = control.handle_requests(_Ctx(journal), [request], NOW_MS)
    assert orjson.loads(reply) == {"ok": False, "error": "unknown command of type list"}


# -- the margin -----------------------------------------------------------------------------

def test_the_deepest_values_allowed_survive_every_wrapper_fleet_puts_around_them(tmp_path):
    """kwargs and a result at MAX_JSON_DEPTH go through the record, the frame, the dispatch
    message, a snapshot, a replay and a ``job`` reply: the margin covers every wrapping."""
    from fleet.controller.dispatch import encode_message
    from fleet.wal import read_snapshot, write_snapshot

    data_dir = str(tmp_path / "data")
    log = open_log(data_dir)
    journal = Journal(log.table, log.writer)
    kwargs = {"v": nested(MAX_JSON_DEPTH - 1)}
    request = orjson.dumps({"req": "r", "jobs": [{"id": "j", "f": "m:f", "k": kwargs}]})
    (_, receipt), = Intake(journal, IntakeOptions.of(Settings())).handle([request], NOW_MS)
    assert b'"accepted"' in receipt
    journal.record(ev.dispatched("j", 1, NOW_MS + 30_000, NOW_MS))
    job = journal.table.get("j")
    sealed = encode_message(job, 1, NOW_MS, Seal((b"key",), DISPATCH, "fleet"))
    assert orjson.loads(Seal((b"key",), DISPATCH, "fleet").open(sealed)[1])["k"] == kwargs
    result = nested(MAX_JSON_DEPTH)
    _reconciler(journal).handle_acks([orjson.dumps({"id": "j", "n": 1, "o": "ok",
                                                    "r": result})], NOW_MS)
    assert journal.table.get("j").state == "completed"
    assert journal.commit()
    reply = orjson.dumps({"ok": True, "data": journal.table.get("j").to_dict()})
    assert orjson.loads(reply)["data"]["result"] == result
    path = write_snapshot(journal.table, data_dir)
    assert read_snapshot(path).get("j").result == result
    log.close()
    replayed = open_log(data_dir)
    assert replayed.table.get("j").result == result
    replayed.close()


def test_reads_go_on_after_redis_lost_its_scripts_and_writes_are_not_repeated(redis_url):
    """SCRIPT FLUSH (or a Redis restarted empty): the next read loads the script again; a
    write sent with it in one pipeline ran once."""
    from fleet.transport import Outbox

    wire, client = _wire(redis_url, ReadLimits())
    client.rpush(KEYS.acks, b"one")
    assert wire.read(64, 2000, []).acks == [b"one"]
    client.script_flush()
    assert wire.read(64, 2000, []).acks == [b"one"]
    client.script_flush()
    inbox = wire.exchange(Outbox(receipts=[("r", b"receipt")], trim_acks=1), 64, 2000, [])
    assert inbox.acks == []
    assert client.lrange(KEYS.receipt("r"), 0, -1) == [b"receipt"]
    client.script_flush()
    client.rpush(KEYS.wake, b"1")
    client.rpush(KEYS.control, b"ctl")
    assert wire.wait_then_read(0.1, 64, 2000, []).control == [b"ctl"]


def test_a_command_redis_refuses_in_an_exchange_is_an_error_and_the_rest_ran(redis_url):
    """A refused write (WRONGTYPE) stops the step with a TransportError, not a crash, and
    the other commands of the one write still ran (Redis runs them all)."""
    from fleet.errors import TransportError
    from fleet.transport import Outbox

    wire, client = _wire(redis_url, ReadLimits())
    client.set(KEYS.ready("q"), b"not a list")
    with pytest.raises(TransportError, match="WRONGTYPE"):
        wire.exchange(Outbox(messages={"q": [b"m"]}, receipts=[("r", b"receipt")]), 64, 2000,
                      ["q"])
    assert client.lrange(KEYS.receipt("r"), 0, -1) == [b"receipt"]
    client.delete(KEYS.ready("q"))
    assert wire.exchange(Outbox(messages={"q": [b"m"]}), 64, 2000, ["q"]).ready_lengths == {
        "q": 1}


@pytest.mark.parametrize("executors", [2**63, -5])
def test_heartbeat_reporting_an_absurd_executor_count_is_malformed_and_ignored(executors):
    """A hostile ``executors`` would size the ready window to the whole backlog: ignored."""
    from fleet.protocol.heartbeat import decode_heartbeat as parse_heartbeat

    beat, clean = parse_heartbeat(orjson.dumps({"id": "w", "executors": executors}))
    assert beat["executors"] is None and clean is False
    assert parse_heartbeat(orjson.dumps({"id": "w", "executors": 8})) == (
        {"id": "w", "executors": 8, "jobs": []}, True)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [1, {"x": -float("inf")}]])
def test_nan_and_infinity_in_kwargs_are_refused_not_sent_as_null(value):
    """orjson would write them as null; the spec check refuses them, as intake would."""
    with pytest.raises(JobSpecError, match="NaN or Infinity"):
        validate_spec({"id": "j", "f": "m:f", "k": {"v": value}})
    validate_spec({"id": "j", "f": "m:f", "k": {"v": None}})


def test_intake_request_that_is_not_json_but_names_itself_gets_a_rejected_receipt(journal):
    """NaN in a raw request: not JSON, but its client is told why instead of timing out."""
    intake = Intake(journal, IntakeOptions.of(Settings()))
    (request_id, body), = intake.handle(
        [b'{"req": "r-nan", "jobs": [{"id": "a", "f": "m:f", "k": {"v": NaN}}]}'], NOW_MS)
    assert request_id == "r-nan"
    assert "not valid JSON" in orjson.loads(body)["error"]
    assert intake.malformed == 1 and journal.pending == []


def test_a_signed_controller_steps_past_an_oversized_request_and_ack(tmp_path):
    """With a signing key, an intake request and an ack over ``max_message_bytes`` arrive as
    their size and head: the step goes on (once it raised inside the seal check, every
    restart again), the request is answered with the limit, the ack is refused, both leave
    their lists, and a good request after them is accepted."""
    from fleet.controller.loop import Controller
    from fleet.keys import Keys
    from fleet.protocol.signing import ACK, INTAKE, Seal

    redis_client = fakeredis.FakeRedis()
    settings = Settings(data_dir=str(tmp_path / "data"), metrics_port=0, signing_key="k",
                        max_message_bytes=4000)
    ctl = Controller(settings, redis_client=redis_client, fork_snapshots=False)
    ctl.start(serve_metrics=False)
    try:
        keys, now = Keys(settings.namespace), ctl.clock()
        big = b'{"req": "r-big", "jobs": [' + b'{"id": "x"},' * 1000 + b'{"id": "y"}]}'
        redis_client.rpush(keys.intake, Seal((b"k",), INTAKE, "fleet").seal(big, now))
        redis_client.rpush(keys.acks, Seal((b"k",), ACK, "fleet").seal(
            b'{"id":"j","n":1,"o":"ok","r":"' + b"x" * 9000 + b'"}', now))
        good = orjson.dumps({"req": "r-ok", "jobs": [{"id": "a", "q": "default", "f": "m:f",
                                                       "a": [], "k": {}}]})
        redis_client.rpush(keys.intake, Seal((b"k",), INTAKE, "fleet").seal(good, now))
        for _ in range(3):
            ctl.step()
        assert redis_client.llen(keys.intake) == 0 and redis_client.llen(keys.acks) == 0
        answer = redis_client.lpop(keys.receipt("r-big"))
        assert answer is not None and b"at most 4000 allowed" in answer
        assert ctl.journal.table.get("a") is not None
        assert ctl.gate.rejected["acks"] == 1
    finally:
        ctl.close()
