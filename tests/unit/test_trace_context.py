"""The trace context a job carries (``tc``): bounded at intake and on the worker, kept in the
ENQUEUE record, the job table and its snapshots, and written into a dispatch message only
for a traced job."""

from __future__ import annotations

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fleet import tracing
from fleet.config import Settings
from fleet.controller.dispatch import encode_message
from fleet.controller.intake import Intake
from fleet.controller.journal import Journal
from fleet.controller.options import IntakeOptions
from fleet.job import MAX_TRACE_VALUE_CHARS, trace_context, validate_spec
from fleet.state import JobTable
from fleet.state import events as ev
from fleet.wal import open_log, read_snapshot, write_snapshot
from fleet.worker.runner import AllowList, Runner
from fleet.worker.wire import Identity

NOW_MS = 1_700_000_000_000
TRACEPARENT = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
TC = {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
RUN = {"w": "w1", "h": "host", "st": 5, "ft": 6}


def _nested(levels: int) -> object:
    value: object = TRACEPARENT
    for _ in range(levels):
        value = {"traceparent": value}
    return value


# Values that cannot be a trace context: the job keeps none.
HOSTILE = [
    pytest.param(TRACEPARENT, id="a-string"),
    pytest.param([TRACEPARENT], id="a-list"),
    pytest.param(42, id="a-number"),
    pytest.param(None, id="null"),
    pytest.param({}, id="empty"),
    pytest.param({"tracestate": "a=b"}, id="no-traceparent"),
    pytest.param(_nested(100), id="nested"),
    pytest.param({"traceparent": [TRACEPARENT]}, id="traceparent-a-list"),
    pytest.param({"traceparent": TRACEPARENT + "-" + "0" * 600}, id="oversized"),
    pytest.param({"traceparent": "0" * 1_000_000}, id="a-megabyte"),
    pytest.param({"traceparent": TRACEPARENT.upper()}, id="uppercase"),
    pytest.param({"traceparent": TRACEPARENT + "\n"}, id="trailing-newline"),
    pytest.param({"traceparent": "00-" + "0" * 32 + "-" + "cd" * 8 + "-01"}, id="zero-trace"),
    pytest.param({"traceparent": "00-" + "ab" * 16 + "-" + "0" * 16 + "-01"}, id="zero-span"),
    pytest.param({"traceparent": "ff" + TRACEPARENT[2:]}, id="version-ff"),
    pytest.param({"traceparent": TRACEPARENT, **{f"k{i}": "v" for i in range(20)}},
                 id="too-many-entries"),
]


@pytest.fixture()
def journal(tmp_path):
    log = open_log(str(tmp_path / "data"))
    yield Journal(log.table, log.writer)
    log.close()


@pytest.fixture()
def spans(monkeypatch):
    """An in-memory exporter behind fleet's tracer."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer("fleet"))
    monkeypatch.setattr(tracing, "_configured", True)  # as if it were the global provider
    return exporter


def _spec(job_id: str, tc: object = None, **fields) -> dict:
    wire = {"id": job_id, "f": "tests.jobs:add", "a": [1, 2], **fields}
    if tc is not None:
        wire["tc"] = tc
    return validate_spec(wire)


def _send(journal: Journal, *jobs: dict) -> list:
    (_, body), = Intake(journal, IntakeOptions.of(Settings())).handle(
        [orjson.dumps({"req": "r", "jobs": list(jobs)})], NOW_MS)
    return orjson.loads(body)["results"]


# -- bounds ---------------------------------------------------------------------------------

def test_a_w3c_trace_context_is_kept_by_validation():
    """traceparent, tracestate and baggage of the W3C form pass validation as they are."""
    carried = {**TC, "baggage": "user=1"}
    assert _spec("j", carried)["tc"] == carried


@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_malformed_trace_context_is_dropped_and_the_job_still_accepted(journal, hostile):
    """Wrong type, nested, oversized or malformed: the controller accepts the job and records
    it without a trace context."""
    assert trace_context(hostile) is None
    assert _send(journal, {"id": "j", "f": "tests.jobs:add", "tc": hostile}) == [
        ["j", "accepted"]]
    [record] = journal.pending
    assert len(orjson.loads(record[4])) == 8  # the spec of an untraced job
    assert journal.table.get("j").trace_context is None


def test_entries_beyond_the_traceparent_that_do_not_fit_are_left_out():
    """An unknown key, a tracestate over the limit, a non-printable or nested baggage: left
    out, the traceparent kept."""
    assert trace_context({"traceparent": TRACEPARENT, "x-other": "1",
                          "tracestate": "a" * (MAX_TRACE_VALUE_CHARS + 1),
                          "baggage": {"nested": "a=b"}}) == {"traceparent": TRACEPARENT}
    assert trace_context({"traceparent": TRACEPARENT, "tracestate": "a=b\r\nX: y",
                          "baggage": "a" * MAX_TRACE_VALUE_CHARS}) == {
        "traceparent": TRACEPARENT, "baggage": "a" * MAX_TRACE_VALUE_CHARS}


# -- record, table, snapshot ----------------------------------------------------------------

def test_an_untraced_jobs_enqueue_record_is_unchanged_and_a_traced_one_ends_with_tc():
    """An untraced job's record is the four fields it always had; a traced job's ends with
    its tc (``enq`` and ``enqa`` alike), which ``fleet wal dump`` shows, and the table keeps
    it at the end of its copy of the spec."""
    spec_text = orjson.dumps(["default", 0, "tests.jobs:add", [1, 2], {}, 30.0, 2, NOW_MS])
    plain = ev.enqueued(_spec("p"), NOW_MS, 30.0, 2)
    assert plain == [ev.ENQUEUED, "p", "default", 0, spec_text.decode()]
    assert "tc" not in ev.describe(plain)
    traced = ev.enqueued(_spec("t", TC), NOW_MS, 30.0, 2)
    assert traced == [*plain[:1], "t", *plain[2:], TC]
    assert ev.describe(traced)["tc"] == TC
    child = ev.enqueued_after(_spec("c", TC, dep=["t"]), NOW_MS, 30.0, 2)
    assert child[-3:] == [["t"], 0, TC] and ev.describe(child)["tc"] == TC
    table = JobTable()
    for record in (plain, traced, child):
        assert table.apply(record)
    assert [table.get(job_id).trace_context for job_id in "ptc"] == [None, TC, TC]


def test_a_log_of_traced_jobs_replays_to_the_live_table(tmp_path):
    """Traced enq and enqa records, committed and recovered: the same table."""
    log = open_log(str(tmp_path / "data"))
    journal = Journal(log.table, log.writer)
    journal.record(ev.enqueued(_spec("t", TC), NOW_MS, 30.0, 2))
    journal.record(ev.enqueued_after(_spec("c", TC, dep=["t"]), NOW_MS, 30.0, 2))
    journal.record(ev.enqueued(_spec("p"), NOW_MS, 30.0, 2))
    journal.commit()
    expected = log.table.canonical()
    log.close()
    recovered = open_log(str(tmp_path / "data"))
    assert recovered.table.canonical() == expected
    assert recovered.table.get("c").trace_context == TC
    recovered.close()


def _table_in_every_state() -> JobTable:
    """Traced jobs cold in line, cold delayed, released (a row in line), in flight, retried
    after dead and dead; and one untraced job."""
    table = JobTable()
    for job_id in ("cold", "delayed", "released", "running", "retried", "dead"):
        fields = {"nb": NOW_MS + 60_000} if job_id == "delayed" else {}
        table.apply(ev.enqueued(_spec(job_id, TC, **fields), NOW_MS, 30.0, 0))
    table.apply(ev.enqueued(_spec("plain"), NOW_MS, 30.0, 0))
    for job_id in ("released", "running", "retried", "dead", "plain"):
        assert table.apply(ev.dispatched(job_id, 1, NOW_MS + 5_000, NOW_MS))
    table.apply(ev.released("released", 1, "shutdown", NOW_MS))
    for job_id in ("retried", "dead"):
        table.apply(ev.failed(job_id, 1, "E: x", RUN, NOW_MS, final=True, at_ms=NOW_MS))
    table.apply(ev.retried("retried", NOW_MS))
    return table


def test_a_snapshot_keeps_the_trace_context_of_jobs_in_every_state(tmp_path):
    """Cold or thawed, pending, delayed, in flight or dead, a job read back from a snapshot
    has the trace context it was enqueued with; an untraced one has none."""
    table = _table_in_every_state()
    loaded = read_snapshot(write_snapshot(table, str(tmp_path)))
    assert loaded.canonical() == table.canonical()
    for job_id in ("cold", "delayed", "released", "running", "retried", "dead"):
        assert loaded.get(job_id).trace_context == TC, job_id
    assert loaded.get("plain").trace_context is None
    assert len(loaded.get("plain").to_row()) == 18  # the row of an untraced job is unchanged


# -- dispatch message -----------------------------------------------------------------------

def test_the_dispatch_message_carries_tc_only_for_a_traced_job_and_stays_deterministic(
        tmp_path):
    """A traced job's message has tc; an untraced one's has the fields it always had; the
    message of an in-flight job encodes to the same bytes after a snapshot round trip."""
    table = _table_in_every_state()
    table.get("running").epoch = table.get("plain").epoch = 3
    traced = encode_message(table.get("running"), 1, NOW_MS)
    plain = encode_message(table.get("plain"), 1, NOW_MS)
    assert orjson.loads(traced)["tc"] == TC
    assert list(orjson.loads(plain)) == ["id", "n", "f", "a", "k", "to", "q", "eq", "ts", "ep"]
    loaded = read_snapshot(write_snapshot(table, str(tmp_path)))
    assert encode_message(loaded.get("running"), 1, NOW_MS) == traced
    assert encode_message(loaded.get("plain"), 1, NOW_MS) == plain


# -- worker ---------------------------------------------------------------------------------

def _runner() -> Runner:
    return Runner(Identity("host:1:ab", "host"), AllowList(("tests.jobs",)), 5.0)


def _message(**fields) -> dict:
    return {"id": "j", "n": 1, "f": "tests.jobs:add", "a": [1, 2], "q": "default", **fields}


def test_the_worker_runs_a_job_with_a_valid_tc_in_its_trace(spans):
    """The run span is a child of the carried context and linked to it."""
    assert _runner().run(_message(tc=TC))[1] is True
    [run] = spans.get_finished_spans()
    assert f"{run.context.trace_id:032x}" == "ab" * 16
    assert f"{run.parent.span_id:016x}" == "cd" * 8
    assert [f"{link.context.span_id:016x}" for link in run.links] == ["cd" * 8]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_the_worker_runs_a_job_whose_tc_is_malformed_in_a_trace_of_its_own(spans, hostile):
    """A malformed tc straight from Redis stops nothing: the job runs, unlinked."""
    assert _runner().run(_message(tc=hostile))[1] is True
    [run] = spans.get_finished_spans()
    assert run.parent is None and list(run.links) == []
    assert run.attributes["fleet.outcome"] == "ok"


def test_a_message_with_fields_of_the_wrong_types_is_refused_not_fatal_to_the_span(spans):
    """A queue or function that is not a string reaches the runner, which refuses it; the
    span names neither."""
    ack, ok = _runner().run(_message(q=_nested(100), f=["tests.jobs:add"]))
    assert ok is False and orjson.loads(ack)["fin"] is True
    [run] = spans.get_finished_spans()
    assert run.name == "fleet run ?" and run.attributes["fleet.queue"] == "default"


def test_without_a_tracer_provider_a_run_builds_no_span(monkeypatch):
    """The API installed but no provider set (OpenTelemetry's proxy): each attempt gets the
    shared null context, not a no-op span built per job (that cost the executor a third of
    its time); once a provider is set, runs are traced."""
    from opentelemetry import trace

    monkeypatch.setattr(tracing, "_configured", False)
    monkeypatch.setattr(tracing, "_next_check", 0.0)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    message = {"id": "j", "n": 1, "q": "default", "f": "tests.jobs:add"}
    assert tracing.run_span(message) is tracing.run_span(message) is tracing._NULL
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: TracerProvider())
    monkeypatch.setattr(tracing, "_next_check", 0.0)  # RECHECK_S later
    assert tracing.run_span(message) is not tracing._NULL


def test_while_no_tracer_provider_is_set_it_is_looked_for_once_a_recheck_interval(monkeypatch):
    """The look reads os.environ (1.2-1.4 µs, twice a job): not once per job, but at most
    once every RECHECK_S, so a provider set later is still found."""
    from opentelemetry import trace

    looks: list[int] = []
    monkeypatch.setattr(trace, "get_tracer_provider",
                        lambda: looks.append(1) or trace.ProxyTracerProvider())
    monkeypatch.setattr(tracing, "_configured", False)
    monkeypatch.setattr(tracing, "_next_check", 0.0)
    clock = [1000.0]
    monkeypatch.setattr(tracing, "monotonic", lambda: clock[0])
    message = {"id": "j", "n": 1, "q": "default", "f": "tests.jobs:add"}
    for _ in range(100):
        assert tracing.run_span(message) is tracing._NULL
    assert len(looks) == 1
    clock[0] += tracing.RECHECK_S
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: TracerProvider())
    assert tracing.run_span(message) is not tracing._NULL
