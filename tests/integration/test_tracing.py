"""OpenTelemetry (the otel extra): the enqueue span and its trace context in the job, the run
span of each attempt linked to it, attributes, and no cost when OpenTelemetry is absent.
Spans are read with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import glob
import os

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import fleet
from fleet import tracing
from fleet.config import load_settings
from fleet.wal.snapshot import read_snapshot
from fleet.worker.runner import AllowList, Runner
from fleet.worker.wire import Identity
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90, method="thread")

# A site directory whose sitecustomize gives a worker the SDK and a span file.
SITE = os.path.join(os.path.dirname(__file__), "otel_site")


@pytest.fixture()
def spans(monkeypatch):
    """An in-memory exporter behind fleet's tracer."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer("fleet"))
    monkeypatch.setattr(tracing, "_configured", True)  # as if it were the global provider
    return exporter


def _sent(client) -> list[dict]:
    """Capture the jobs of every intake request the client pushes."""
    bodies: list[bytes] = []
    send = client.wire.send_requests
    client.wire.send_requests = lambda batch: (bodies.extend(batch), send(batch))[1]
    return bodies


def _jobs(bodies: list[bytes]) -> list[dict]:
    return [job for body in bodies for job in orjson.loads(body)["jobs"]]


def _traced_worker(local, spans_path: str):
    """A real ``fleet worker`` process whose spans are appended to ``spans_path``."""
    path = os.pathsep.join([SITE, os.getcwd(), os.environ.get("PYTHONPATH", "")])
    return local.worker(1, env={"PYTHONPATH": path, "FLEET_TEST_SPANS": spans_path})


def _run_spans(spans_path: str, job_id: str, count: int, timeout_s: float = 40.0
               ) -> list[dict]:
    """Wait until the worker exported ``count`` run spans of ``job_id``; them, by attempt."""
    def run_spans() -> list[dict]:
        if not os.path.exists(spans_path):
            return []
        with open(spans_path, "rb") as handle:
            lines = handle.read().split(b"\n")[:-1]  # whole lines only
        return [span for span in map(orjson.loads, lines)
                if span["name"].startswith("fleet run")
                and span["attributes"].get("fleet.job_id") == job_id]
    found = wait_until(run_spans, timeout_s, until=lambda spans: len(spans) >= count,
                       what=f"{count} run span(s) of {job_id}", poll_s=0.1)
    return sorted(found, key=lambda span: span["attributes"]["fleet.attempt"])


def _assert_child_of(run: dict, enqueue) -> None:
    """The worker's run span (JSON) is in the enqueue span's trace, its child and linked."""
    trace_id = f"0x{enqueue.context.trace_id:032x}"
    span_id = f"0x{enqueue.context.span_id:016x}"
    assert run["context"]["trace_id"] == trace_id
    assert run["parent_id"] == span_id
    assert [(link["context"]["trace_id"], link["context"]["span_id"])
            for link in run["links"]] == [(trace_id, span_id)]


def _snapshot_holding(data_dir: str, job_id: str, timeout_s: float = 20.0):
    """The job as the newest snapshot holds it, once one does."""
    def held():
        paths = sorted(glob.glob(os.path.join(data_dir, "snapshots", "*.snap")))
        try:
            return read_snapshot(paths[-1]).get(job_id) if paths else None
        except FileNotFoundError:  # pruned while we looked
            return None
    return wait_until(held, timeout_s, until=lambda job: job is not None,
                      what=f"a snapshot holding {job_id}", poll_s=0.1)


@pytest.mark.integration
def test_enqueue_span_puts_its_trace_context_into_the_job_and_the_run_span_links_it(
        local, spans):
    """A PRODUCER span per enqueue, its traceparent in the job's tc; a run of that job is a
    CONSUMER child linked to it, with job id, attempt, queue and outcome."""
    local.controller()
    client = local.client()
    bodies = _sent(client)
    job = client.enqueue("tests.jobs:add", 1, 2, queue="maths")
    [enqueue] = spans.get_finished_spans()
    assert enqueue.name == "fleet enqueue" and enqueue.kind == trace.SpanKind.PRODUCER
    assert enqueue.attributes["fleet.job_id"] == job.id
    assert enqueue.attributes["fleet.queue"] == "maths"
    assert enqueue.attributes["fleet.outcome"] == "accepted"
    [wire] = _jobs(bodies)
    trace_id = f"{enqueue.context.trace_id:032x}"
    assert wire["tc"]["traceparent"].split("-")[1] == trace_id

    runner = Runner(Identity("host:1:ab", "host"), AllowList(("tests.jobs",)), 5.0)
    message = {"id": job.id, "n": 2, "f": "tests.jobs:add", "a": [1, 2], "q": "maths",
               "tc": wire["tc"]}
    assert runner.run(message)[1] is True
    runner.run({**message, "f": "tests.jobs:fail", "a": ["boom"], "n": 3})
    run, failed = spans.get_finished_spans()[1:]
    assert run.name == "fleet run tests.jobs:add" and run.kind == trace.SpanKind.CONSUMER
    assert run.parent.span_id == enqueue.context.span_id
    assert [link.context.span_id for link in run.links] == [enqueue.context.span_id]
    assert dict(run.attributes) == {"fleet.job_id": job.id, "fleet.attempt": 2,
                                    "fleet.queue": "maths", "fleet.outcome": "ok"}
    assert failed.attributes["fleet.outcome"] == "failed"


@pytest.mark.integration
def test_a_worker_process_runs_every_attempt_in_a_child_of_the_enqueue_span(
        local, spans, tmp_path):
    """Client, controller and worker as real processes: the trace context goes through the
    controller, and each attempt's run span on the worker is a child of, and linked to, the
    enqueue span, with job id, attempt, queue and outcome."""
    local.controller()
    spans_path = str(tmp_path / "worker-spans.jsonl")
    _traced_worker(local, spans_path)
    client = local.client()
    ok = client.enqueue("tests.jobs:add", 1, 2, queue="default")
    failing = client.enqueue("tests.jobs:fail", "boom", max_retries=1)
    enqueue_ok, enqueue_failing = spans.get_finished_spans()
    assert enqueue_ok.context.trace_id != enqueue_failing.context.trace_id

    [run] = _run_spans(spans_path, ok.id, 1)
    _assert_child_of(run, enqueue_ok)
    assert run["name"] == "fleet run tests.jobs:add" and run["kind"] == "SpanKind.CONSUMER"
    assert run["attributes"] == {"fleet.job_id": ok.id, "fleet.attempt": 1,
                                 "fleet.queue": "default", "fleet.outcome": "ok"}
    attempts = _run_spans(spans_path, failing.id, 2)
    for number, attempt in enumerate(attempts, start=1):
        _assert_child_of(attempt, enqueue_failing)
        assert attempt["attributes"]["fleet.attempt"] == number
        assert attempt["attributes"]["fleet.outcome"] == "failed"


@pytest.mark.integration
@pytest.mark.parametrize("recovered_from", ["log", "snapshot"])
def test_the_trace_context_survives_a_controller_killed_between_enqueue_and_dispatch(
        local, spans, tmp_path, recovered_from):
    """A job enqueued into a paused queue, the controller SIGKILLed and restarted (the job
    recovered from the log, or from a snapshot that covers its enqueue), then dispatched: the
    worker's run span is still a child of the enqueue span."""
    snapshots = {"FLEET_SNAPSHOT_EVERY_RECORDS": "1"} if recovered_from == "snapshot" else {}
    controller = local.controller(env=snapshots)
    client = local.client()
    client.pause("default")
    job = client.enqueue("tests.jobs:add", 2, 3)
    [enqueue] = spans.get_finished_spans()
    context = enqueue.context
    traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    if recovered_from == "snapshot":
        assert _snapshot_holding(local.data_dir, job.id).trace_context == {
            "traceparent": traceparent}
    else:
        assert not glob.glob(os.path.join(local.data_dir, "snapshots", "*.snap"))
    assert job.status() == "pending"
    controller.kill9()

    local.controller()
    client.resume("default")
    spans_path = str(tmp_path / "worker-spans.jsonl")
    _traced_worker(local, spans_path)
    [run] = _run_spans(spans_path, job.id, 1)
    _assert_child_of(run, enqueue)
    assert run["attributes"]["fleet.outcome"] == "ok"
    assert job.result(timeout_s=30) == 5


@pytest.mark.integration
def test_async_enqueues_each_carry_their_own_callers_trace(local, spans):
    """Enqueues coalesced into one request keep each caller's own trace context."""
    local.controller()

    async def main():
        settings = load_settings(env=local.environment())[0]
        async with fleet.AsyncClient(redis_url=local.redis_url, settings=settings) as client:
            bodies = _sent(client)

            async def traced(n: int):
                with tracing.tracer().start_as_current_span(f"request {n}"):
                    return await client.enqueue("tests.jobs:add", n, 1)

            jobs = await asyncio.gather(*(traced(n) for n in range(3)))
            assert client.requests_sent == 1
            return jobs, _jobs(bodies)

    jobs, wires = asyncio.run(main())
    by_name = {span.name: span for span in spans.get_finished_spans()}
    for n, wire in enumerate(wires):
        outer = by_name[f"request {n}"]
        assert wire["tc"]["traceparent"].split("-")[1] == f"{outer.context.trace_id:032x}"
    assert len({wire["tc"]["traceparent"] for wire in wires}) == 3


def test_without_opentelemetry_nothing_is_traced_or_added(monkeypatch):
    """OpenTelemetry absent: the span helpers are one shared null context, jobs carry no tc."""
    monkeypatch.setattr(tracing, "trace", None)
    wires = [{"id": "a", "f": "m:f"}]
    assert tracing.enqueue_span(wires) is tracing.run_span({"id": "a"}) is tracing._NULL
    with tracing.enqueue_span(wires) as span:
        tracing.enqueue_outcome(span, ["accepted"])
    assert wires == [{"id": "a", "f": "m:f"}]
    runner = Runner(Identity("host:1:ab", "host"), AllowList(("tests.jobs",)), 5.0)
    assert runner.run({"id": "j", "n": 1, "f": "tests.jobs:add", "a": [1, 2]})[1] is True
