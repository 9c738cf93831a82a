"""The events that change the job table, as the compact records that the WAL stores.

A record is a JSON array: its type code, then its fields in a fixed order (``FIELDS``).
Records are positional rather than keyed because recovery decodes millions of them, and a
decoder builds an array of a few values several times faster than an object with names
(docs/performance.md has the measurements). The constructors below are the only place that
lays a record out; ``describe`` turns one back into a named dict for people and tools
(``fleet wal dump``). The sequence number is not stored in the record: it follows from the
record's place in its frame, and the journal passes it beside the record.

An enqueue carries the job as ``spec``, one JSON text
``[queue, not_before_ms, func, args, kwargs, timeout_s, max_retries, enqueued_ms]``, and
repeats the queue and not-before time beside it for routing. A traced job's record ends with
its trace context (``tc``); the table keeps it at the end of its copy of the spec
(``traced_spec``). The table keeps that text as it
is until the job is first dispatched or touched: a backlog of pending jobs costs one string
each, not a dozen objects (``JobRecord.from_spec`` unpacks it).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..flow import Flow, flow_of

Record = list[Any]

(ENQUEUED, DISPATCHED, ACKED, FAILED, EXPIRED, RELEASED, RETRIED, CANCELLED, COMPACTED,
 PAUSED, RESUMED, BOOTED, SCHEDULED, DUE, ENQUEUED_AFTER, LIMITS) = range(16)

NAMES = ("enq", "disp", "ack", "fail", "exp", "rel", "retry", "cancel", "compact", "pause",
         "resume", "boot", "sched", "due", "enqa", "limit")

FIELDS: tuple[tuple[str, ...], ...] = (
    ("id", "q", "nb", "spec", "tc"),                              # enq (tc optional)
    ("id", "n", "ld", "ts"),                                      # disp
    ("id", "n", "r", "w", "h", "st", "ft", "ts"),                 # ack
    ("id", "n", "e", "nb", "fin", "w", "h", "st", "ft", "ts", "tb"),  # fail (tb optional)
    ("id", "n", "nb", "ts"),                                      # exp
    ("id", "n", "why", "ts"),                                     # rel
    ("id", "ts"),                                                 # retry
    ("id", "ts", "why"),                                          # cancel (why optional)
    ("ids",),                                                     # compact
    ("q",),                                                       # pause
    ("q",),                                                       # resume
    ("epoch", "ts"),                                              # boot
    ("name", "at"),                                               # sched
    ("ts",),                                                      # due
    ("id", "q", "nb", "spec", "dep", "fl", "tc"),                 # enqa (tc optional)
    ("q", "lim"),                                                 # limit
)

# Record types whose last field is written only when there is one (a FAIL's traceback, an
# enqueued job's trace context).
OPTIONAL_LAST = frozenset({FAILED, ENQUEUED, ENQUEUED_AFTER, CANCELLED})

# A FAIL record's traceback is cut to this many characters (the worker sends at most 8 KiB).
TRACEBACK_MAX_CHARS = 8 * 1024

SPEC_FIELDS = ("q", "nb", "f", "a", "k", "to", "mr", "ts")
FLOW_FIELDS = ("py", "xp", "ky")  # a flow job's ninth spec field, spelt out by ``describe``

# Records of these types name one job at index 1.
JOB_TYPES = frozenset(range(CANCELLED + 1))


def enqueued(spec: dict[str, Any], at_ms: int, timeout_s: float, max_retries: int) -> Record:
    """A job was accepted. ``spec`` is a validated wire spec (see ``fleet.job``).

    Its trace context (``tc``) is the record's last field, written only when the job has
    one: the record of an untraced job is what it always was, and a fleet that knows no
    trace context refuses a log holding one (the wrong fields) rather than failing later on
    a spec it cannot unpack.
    """
    queue, not_before_ms = spec["q"], spec.get("nb", 0)
    fields = [queue, not_before_ms, spec["f"], spec["a"], spec["k"],
              spec.get("to", timeout_s), spec.get("mr", max_retries), at_ms]
    flow = flow_of(spec, at_ms)
    if flow is not None:  # a ninth field, a list: see ``spec_flow``
        fields.append(flow)
    text = orjson.dumps(fields)
    record = [ENQUEUED, spec["id"], queue, not_before_ms, text.decode()]
    if spec.get("tc"):
        record.append(spec["tc"])
    return record


def enqueued_after(spec: dict[str, Any], at_ms: int, timeout_s: float, max_retries: int
                   ) -> Record:
    """A job with parents was accepted: an ``enq`` record plus its parent ids (``dep``) and
    its options as bits (``fl``: 1 allow_failure, 2 pass_results; ``fleet.state.graph``),
    then its trace context as in ``enq``.

    A type of its own, not an optional field of ``enq``: a fleet that knows no dependencies
    refuses the log (an unknown type) rather than running the job before its parents."""
    record = enqueued(spec, at_ms, timeout_s, max_retries)
    flags = (1 if spec.get("af") else 0) | (2 if spec.get("pr") else 0)
    return [ENQUEUED_AFTER, *record[1:5], list(spec["dep"]), flags, *record[5:]]


def spec_flow(spec: str) -> Flow | None:
    """The flow (``[priority, expires_at_ms, key]``, fleet/flow.py) of a spec text, None for
    a plain job. A plain spec ends with its enqueue time (a digit) or, traced, with its trace
    context (an object); a flow's spec has the flow list as its ninth field, so it ends in
    ``]]`` untraced: only a traced job's text is parsed to tell."""
    end = spec[-2]
    if end == "]":
        flow: Flow = orjson.loads(spec)[8]
        return flow
    if end == "}":
        fields = orjson.loads(spec)
        return fields[8] if len(fields) > 9 else None
    return None


def traced_spec(spec: str, trace_context: Any) -> str:
    """The spec text of an enqueue record with the job's trace context as a ninth field: the
    form the table keeps (and snapshots store) for a traced job."""
    return f"{spec[:-1]},{orjson.dumps(trace_context).decode()}]"


def dispatched(job_id: str, attempt: int, lease_deadline_ms: int, at_ms: int) -> Record:
    """Attempt ``attempt`` of a job was leased until ``lease_deadline_ms``."""
    return [DISPATCHED, job_id, attempt, lease_deadline_ms, at_ms]


def acked(job_id: str, attempt: int, result: Any, run: dict[str, Any],
          at_ms: int | None = None) -> Record:
    """Attempt ``attempt`` succeeded. ``run`` holds worker, host, start and finish times.

    ``at_ms`` is the controller's time of recording; it, not the worker's clock, dates the
    finish (retention must not depend on a worker's clock being right).
    """
    return [ACKED, job_id, attempt, result, *_run_fields(run), at_ms]


def failed(job_id: str, attempt: int, error: str, run: dict[str, Any], retry_at_ms: int,
           final: bool = False, at_ms: int | None = None,
           traceback: str | None = None) -> Record:
    """Attempt ``attempt`` failed. Retried at ``retry_at_ms`` unless final or out of retries.

    ``traceback`` (the worker's, at most TRACEBACK_MAX_CHARS) is the record's last field,
    written only when there is one: a record without it is the older form, and reads as an
    attempt with no traceback.
    """
    record = [FAILED, job_id, attempt, error, retry_at_ms, final, *_run_fields(run), at_ms]
    if traceback:
        record.append(traceback)
    return record


def expired(job_id: str, attempt: int, retry_at_ms: int, at_ms: int) -> Record:
    """The lease of attempt ``attempt`` ran out without an ack: a failed attempt."""
    return [EXPIRED, job_id, attempt, retry_at_ms, at_ms]


def released(job_id: str, attempt: int, reason: str, at_ms: int) -> Record:
    """Attempt ``attempt`` was handed back unrun or interrupted; not counted as a failure."""
    return [RELEASED, job_id, attempt, reason, at_ms]


def retried(job_id: str, at_ms: int) -> Record:
    """An operator sent a dead job back to pending with a fresh retry budget."""
    return [RETRIED, job_id, at_ms]


def cancelled(job_id: str, at_ms: int, reason: str | None = None) -> Record:
    """A pending or in-flight job was cancelled; ``reason`` (``expired``: not started before
    its expiry) is written only when there is one."""
    return [CANCELLED, job_id, at_ms] if reason is None else [CANCELLED, job_id, at_ms, reason]



def compacted(job_ids: list[str]) -> Record:
    """Finished jobs past the retention window are forgotten."""
    return [COMPACTED, job_ids]


def paused(queue: str) -> Record:
    """Dispatch from ``queue`` stops until it is resumed."""
    return [PAUSED, queue]


def resumed(queue: str) -> Record:
    """Dispatch from ``queue`` starts again."""
    return [RESUMED, queue]


def limits(queue: str, limits: dict[str, Any]) -> Record:
    """``queue``'s limits are now ``limits`` (fleet/flow.py ``check_limits``; an empty
    mapping: none). The whole set, not a change, so that a record read alone says it all."""
    return [LIMITS, queue, limits]


def booted(epoch: int, at_ms: int) -> Record:
    """A controller started with fencing epoch ``epoch``."""
    return [BOOTED, epoch, at_ms]


def scheduled(name: str, fire_ms: int) -> Record:
    """Periodic schedule ``name`` has fired every run up to ``fire_ms`` (its cursor)."""
    return [SCHEDULED, name, fire_ms]


def due(at_ms: int) -> Record:
    """Delayed jobs and retries whose time came by ``at_ms`` join the back of their queues'
    lines, earliest first. Logged, so that a line's order is a function of the log."""
    return [DUE, at_ms]


def describe(record: Record, seq: int | None = None) -> dict[str, Any]:
    """The record as a dict with named fields (``t`` its type name, ``s`` its number), the
    enqueue spec spelt out: the form ``fleet wal dump`` prints.

    Raises:
        ValueError: not a record of a known type with the right number of fields.
    """
    kind = record[0] if isinstance(record, list) and record else None
    if not isinstance(kind, int) or not 0 <= kind < len(NAMES) \
            or len(record) - 1 not in _field_counts(kind):
        raise ValueError(f"not a fleet record: {str(record)[:80]}")
    named: dict[str, Any] = {} if seq is None else {"s": seq}
    named["t"] = NAMES[kind]
    named.update(zip(FIELDS[kind], record[1:], strict=False))
    if kind in (ENQUEUED, ENQUEUED_AFTER):
        fields = orjson.loads(named.pop("spec"))
        named.update(zip(SPEC_FIELDS, fields[:8], strict=True))
        if len(fields) > 8:
            named.update(zip(FLOW_FIELDS, fields[8], strict=True))
    return named


def _field_counts(kind: int) -> tuple[int, ...]:
    """How many fields a record of ``kind`` may have (``OPTIONAL_LAST``: one fewer too)."""
    count = len(FIELDS[kind])
    return (count - 1, count) if kind in OPTIONAL_LAST else (count,)


def _run_fields(run: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    return run.get("w"), run.get("h"), run.get("st"), run.get("ft")
