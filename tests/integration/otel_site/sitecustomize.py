"""Loaded (through PYTHONPATH) into a worker started by test_tracing.py.

With ``FLEET_TEST_SPANS`` set, the OpenTelemetry SDK becomes the global TracerProvider, and
each span ends up as one JSON line (``ReadableSpan.to_json``) appended to that file, for the
test to read. Spans are exported as they end (SimpleSpanProcessor: no thread to lose across
the supervisor's fork), each with one O_APPEND write, so executors do not mix their lines.
"""

import os

_PATH = os.environ.get("FLEET_TEST_SPANS")

if _PATH:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class _FileExporter(SpanExporter):
        def export(self, spans):
            for span in spans:
                fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, (span.to_json(indent=None) + "\n").encode())
                finally:
                    os.close(fd)
            return SpanExportResult.SUCCESS

    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(_FileExporter()))
    trace.set_tracer_provider(_provider)
