"""OpenTelemetry tracing, with the ``otel`` extra (``pip install 'fleet[otel]'``).

The enqueuing code's W3C trace context travels in the job (``tc``: ``{"traceparent": ...,
"tracestate": ...}``, docs/protocol.md): ``Client.enqueue_many`` and each
``AsyncClient.enqueue_spec`` run in a PRODUCER span ``fleet enqueue`` whose context is put into
every job they send; the controller keeps it with the job (its ENQUEUE record, snapshots) and
writes it into each dispatch message; the worker runs each attempt in a CONSUMER span
``fleet run <func>``, child of and linked to the context the message carries. The context
comes from Redis, so both ends bound it first (``fleet.job.trace_context``): a malformed one
is left out and the attempt runs in a trace of its own. Attributes: ``fleet.job_id``,
``fleet.attempt``, ``fleet.queue``, ``fleet.outcome`` (``ok`` / ``failed`` on a run;
``accepted`` / ``duplicate`` / ``rejected`` on an enqueue of one job), ``fleet.job_count``.

Spans go to whatever TracerProvider the application configured (none: OpenTelemetry's
no-op). Without the extra, every entry point returns a shared null context manager: no
import, no allocation per job.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from time import monotonic
from typing import Any

from .job import trace_context

try:
    from opentelemetry import propagate, trace
except ImportError:  # the otel extra is not installed: tracing is off
    propagate = None  # type: ignore[assignment, unused-ignore]
    trace = None  # type: ignore[assignment, unused-ignore]

_NULL: contextlib.nullcontext[None] = contextlib.nullcontext()
TRACE_FIELD = "tc"


def tracer() -> Any:
    """fleet's tracer, from the global TracerProvider (looked up per span: it may be set
    after fleet is imported)."""
    return trace.get_tracer("fleet") if trace is not None else None


def enqueue_span(wires: Sequence[dict[str, Any]]) -> contextlib.AbstractContextManager[Any]:
    """A PRODUCER span around sending ``wires`` (wire-form jobs); each job gets the span's
    trace context in its ``tc`` field."""
    if trace is None:
        return _NULL
    return _enqueue(wires)


@contextlib.contextmanager
def _enqueue(wires: Sequence[dict[str, Any]]) -> Iterator[Any]:
    attributes: dict[str, Any] = {"fleet.job_count": len(wires)}
    if len(wires) == 1:
        attributes.update({"fleet.job_id": wires[0]["id"],
                           "fleet.queue": wires[0].get("q", "default")})
    with tracer().start_as_current_span("fleet enqueue", kind=trace.SpanKind.PRODUCER,
                                        attributes=attributes) as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        carried = trace_context(carrier)  # what the controller would keep of it
        if carried is not None:
            for wire in wires:
                wire[TRACE_FIELD] = carried
        yield span


def enqueue_outcome(span: Any, statuses: Sequence[str]) -> None:
    """Record the receipts' statuses on an enqueue span (None: tracing is off)."""
    if span is None:
        return
    if len(statuses) == 1:
        span.set_attribute("fleet.outcome", statuses[0])
    else:
        span.set_attribute("fleet.accepted", sum(s != "rejected" for s in statuses))


def run_span(message: dict[str, Any]) -> contextlib.AbstractContextManager[Any]:
    """A CONSUMER span around one attempt of the job in a dispatch ``message``; the shared
    null context while no TracerProvider is configured in this process."""
    if trace is None or not _recording():
        return _NULL
    return _run(message)


_configured = False
RECHECK_S = 1.0  # while no TracerProvider is set, how often to look for one
_next_check = 0.0  # monotonic() time of the next look


def _recording() -> bool:
    """Whether the process has a TracerProvider of its own (set once, by the application or
    ``OTEL_PYTHON_TRACER_PROVIDER``): without one every span is a no-op, and building one per
    job cost the executor about a third of its time with the API installed (the otel extra,
    or any package that depends on opentelemetry-api). Until one is found it is looked for
    at most once every RECHECK_S: the look reads ``os.environ`` (1.2-1.4 µs, twice a job),
    so a provider set after jobs began running is used from at most RECHECK_S later."""
    global _configured, _next_check
    if not _configured:
        now = monotonic()
        if now < _next_check:
            return False
        _next_check = now + RECHECK_S
        provider = trace.get_tracer_provider()
        _configured = not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    return _configured


@contextlib.contextmanager
def _run(message: dict[str, Any]) -> Iterator[Any]:
    carried = trace_context(message.get(TRACE_FIELD))
    parent = propagate.extract(carried) if carried is not None else None
    linked = trace.get_current_span(parent).get_span_context() if parent else None
    links = [trace.Link(linked)] if linked is not None and linked.is_valid else []
    # The message's fields are used only when they have their types: whatever a hostile
    # writer put there must not stop the executor before the runner refuses it.
    attributes = {"fleet.job_id": _text(message.get("id"), ""),
                  "fleet.attempt": _count(message.get("n")),
                  "fleet.queue": _text(message.get("q"), "default")}
    name = f"fleet run {_text(message.get('f'), '?')}"
    with tracer().start_as_current_span(name, context=parent,
                                        kind=trace.SpanKind.CONSUMER, links=links,
                                        attributes=attributes) as span:
        yield span


def _text(value: Any, default: str) -> str:
    return value[:200] if isinstance(value, str) else default


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def run_outcome(span: Any, ok: bool) -> None:
    """Record an attempt's outcome on its run span (None: tracing is off)."""
    if span is not None:
        span.set_attribute("fleet.outcome", "ok" if ok else "failed")
