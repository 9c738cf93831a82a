"""Every record constructor lays out exactly the fields ``FIELDS`` names for its type, with
and without its optional last field, and ``describe`` names each of them back."""

from __future__ import annotations

from typing import Any

import pytest

from fleet.state import events as ev

SPEC = {"id": "j1", "q": "default", "f": "fleet.demo:noop", "a": [1], "k": {"x": 2}}
TRACED = {**SPEC, "tc": {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}}
RUN = {"w": "w1", "h": "host", "st": 10, "ft": 20}

# (constructor, arguments, record type, whether the optional last field is written)
CASES: list[tuple[str, Any, tuple[Any, ...], int, bool]] = [
    ("enq", ev.enqueued, (SPEC, 1_000, 30.0, 3), ev.ENQUEUED, False),
    ("enq traced", ev.enqueued, (TRACED, 1_000, 30.0, 3), ev.ENQUEUED, True),
    ("enqa", ev.enqueued_after, ({**SPEC, "dep": ["p"], "af": True}, 1_000, 30.0, 3),
     ev.ENQUEUED_AFTER, False),
    ("enqa traced", ev.enqueued_after, ({**TRACED, "dep": ["p"]}, 1_000, 30.0, 3),
     ev.ENQUEUED_AFTER, True),
    ("disp", ev.dispatched, ("j1", 1, 5_000, 1_000), ev.DISPATCHED, False),
    ("ack", ev.acked, ("j1", 1, {"r": 1}, RUN, 1_000), ev.ACKED, False),
    ("fail", ev.failed, ("j1", 1, "boom", RUN, 2_000, False, 1_000), ev.FAILED, False),
    ("fail with traceback", ev.failed, ("j1", 1, "boom", RUN, 2_000, True, 1_000, "Trace"),
     ev.FAILED, True),
    ("exp", ev.expired, ("j1", 1, 2_000, 1_000), ev.EXPIRED, False),
    ("rel", ev.released, ("j1", 1, "shutdown", 1_000), ev.RELEASED, False),
    ("retry", ev.retried, ("j1", 1_000), ev.RETRIED, False),
    ("cancel", ev.cancelled, ("j1", 1_000), ev.CANCELLED, False),
    ("cancel expired", ev.cancelled, ("j1", 1_000, "expired"), ev.CANCELLED, True),
    ("enq with a flow", ev.enqueued, ({**SPEC, "py": 3, "ky": "t", "ex": 5}, 1_000, 30.0, 3),
     ev.ENQUEUED, False),
    ("limit", ev.limits, ("default", {"concurrency": 2}), ev.LIMITS, False),
    ("compact", ev.compacted, (["j1", "j2"],), ev.COMPACTED, False),
    ("pause", ev.paused, ("default",), ev.PAUSED, False),
    ("resume", ev.resumed, ("default",), ev.RESUMED, False),
    ("boot", ev.booted, (3, 1_000), ev.BOOTED, False),
    ("sched", ev.scheduled, ("nightly", 1_000), ev.SCHEDULED, False),
    ("due", ev.due, (1_000,), ev.DUE, False),
]


@pytest.mark.parametrize(("make", "args", "kind", "optional"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_constructor_writes_the_fields_its_type_names(make, args, kind, optional):
    record = make(*args)
    assert record[0] == kind
    names = ev.FIELDS[kind]
    written = len(record) - 1
    if optional:
        assert written == len(names)
    else:
        assert written == len(names) - (1 if kind in ev.OPTIONAL_LAST else 0)
    named = ev.describe(record)
    for name in names[:written]:
        if name != "spec":  # describe unpacks the spec into its own fields
            assert name in named, name


def test_every_record_type_has_a_constructor_case():
    assert {case[3] for case in CASES} == set(range(len(ev.FIELDS)))
