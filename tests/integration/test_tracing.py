"""OpenTelemetry (the otel extra): the enqueue span and its trace context in the job, the run
span of each attempt linked to it, attributes, and no cost when OpenTelemetry is absent.
Spans are read with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import fleet
from fleet import tracing
from fleet.config import load_settings
from fleet.worker.runner import AllowList, Runner
from fleet.worker.wire import Identity

pytestmark = pytest.mark.timeout(60, method="thread")


@pytest.fixture()
def spans(monkeypatch):
    """An in-memory exporter behind fleet's tracer."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer("fleet"))
    return exporter


def _sent(client) -> list[dict]:
    """Capture the jobs of every intake request the client pushes."""
    bodies: list[bytes] = []
    send = client.wire.send_requests
    client.wire.send_requests = lambda batch: (bodies.extend(batch), send(batch))[1]
    return bodies


def _jobs(bodies: list[bytes]) -> list[dict]:
    return [job for body in bodies for job in orjson.loads(body)["jobs"]]


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
