"""What a job is before it is accepted: its description, and the checks it must pass.

Both the client (before sending) and the controller (before accepting) run ``validate_spec``,
so a bad job is refused with the same one-line reason wherever it is caught.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import JobSpecError
from .flow import check_flow
from .names import GOOD_FUNCS, GOOD_QUEUES, good_func, good_queue

DEFAULT_QUEUE = "default"
DEFAULT_FUNC = "fleet.demo:simulate"
MAX_ID_CHARS = 200
MAX_TIMEOUT_S = 7 * 24 * 3600
MAX_RETRIES_LIMIT = 100
MAX_PAYLOAD_BYTES = 512 * 1024
MAX_PARENTS = 10_000
# How deep a job's args and kwargs, or a result, may nest. orjson refuses to encode past 254
# levels, and fleet wraps what it stores (a record in its frame, a result in a snapshot row or
# a control reply, kwargs in a dispatch message): the margin keeps every wrapper encodable.
MAX_JSON_DEPTH = 128
_ORJSON_MAX_DEPTH = 254

# A wire spec's optional fields checked by _check_dependencies and check_flow.
_WORKFLOW_FIELDS = frozenset(("af", "pr", "dep"))
_FLOW_FIELDS = frozenset(("py", "ky", "ex"))
# The fields of a job that has no parents, flow options or trace context (most jobs): a
# spec holding no other key skips those three checks after one set test.
_PLAIN_FIELDS = frozenset(("id", "f", "q", "a", "k", "to", "mr", "nb"))

# The W3C trace context a job may carry (``tc``, docs/protocol.md §1): a traceparent, and the
# tracestate and baggage beside it when they are short header values. It comes from whoever
# can write to Redis, so it is bounded before anything keeps or reads it.
TRACE_KEYS = ("traceparent", "tracestate", "baggage")
MAX_TRACE_ENTRIES = 8
MAX_TRACE_VALUE_CHARS = 512
_TRACEPARENT_RE = re.compile(
    r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


@dataclass(frozen=True)
class JobSpec:
    """One job as a client describes it. Times are milliseconds since the epoch."""

    id: str
    func: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    timeout_s: float | None = None
    max_retries: int | None = None
    run_at_ms: int = 0
    depends_on: tuple[str, ...] = ()
    allow_failure: bool = False
    pass_results: bool = False
    key: str | None = None
    priority: int = 0
    expires_s: float | None = None

    def to_wire(self) -> dict[str, Any]:
        """The compact form carried on the intake list."""
        wire: dict[str, Any] = {"id": self.id, "f": self.func, "q": self.queue}
        if self.args:
            wire["a"] = self.args
        if self.kwargs:
            wire["k"] = self.kwargs
        if self.timeout_s is not None:
            wire["to"] = self.timeout_s
        if self.max_retries is not None:
            wire["mr"] = self.max_retries
        if self.run_at_ms:
            wire["nb"] = self.run_at_ms
        if self.depends_on:
            wire["dep"] = list(self.depends_on)
        if self.allow_failure:
            wire["af"] = self.allow_failure
        if self.pass_results:
            wire["pr"] = self.pass_results
        if self.key is not None:
            wire["ky"] = self.key
        if self.priority:
            wire["py"] = self.priority
        if self.expires_s is not None:
            wire["ex"] = self.expires_s
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> JobSpec:
        """The JobSpec whose ``to_wire`` is ``wire`` (a wire form ``validate_spec`` passed)."""
        fields = {name: wire[key] for key, name in _SPEC_OF_WIRE if key in wire}
        if "depends_on" in fields:
            fields["depends_on"] = tuple(fields["depends_on"])
        return cls(id=wire["id"], func=wire["f"], queue=wire.get("q", DEFAULT_QUEUE), **fields)


def new_job_id() -> str:
    """A random, URL-safe job id."""
    return os.urandom(16).hex()  # 32 random hex digits; uuid4().hex costs 3x as much


def validate_spec(wire: Any) -> dict[str, Any]:
    """Check one wire-form job and return it normalised.

    Raises:
        JobSpecError: with a one-line reason naming the bad field.
    """
    if not isinstance(wire, dict):
        raise JobSpecError(f"a job must be a JSON object, not {type(wire).__name__}")
    job_id = _check_id(wire.get("id"))
    func = wire.get("f")
    # The set lookup inlined: the call it saves is a sixth of this check.
    if not (type(func) is str and func in GOOD_FUNCS) and not good_func(func):
        raise JobSpecError(f"job {job_id}: func must be 'module:function' or a dotted path, "
                           f"got {_shown(func)}")
    queue = wire.get("q", DEFAULT_QUEUE)
    if not (type(queue) is str and queue in GOOD_QUEUES) and not good_queue(queue):
        raise JobSpecError(f"job {job_id}: queue must match [A-Za-z0-9_.-]{{1,64}}, "
                           f"got {_shown(queue)}")
    args, kwargs = wire.get("a", []), wire.get("k", {})
    if not isinstance(args, list):
        raise JobSpecError(f"job {job_id}: args must be a list")
    if not isinstance(kwargs, dict):
        raise JobSpecError(f"job {job_id}: kwargs must be an object")
    out = {"id": job_id, "f": func, "q": queue, "a": args, "k": kwargs}
    _check_limits(job_id, wire, out)
    problem = json_problem([args, kwargs], MAX_PAYLOAD_BYTES, depth_used=1)
    if problem:
        raise JobSpecError(f"job {job_id}: args and kwargs are {problem}")
    if _PLAIN_FIELDS.issuperset(wire):
        return out
    if not _WORKFLOW_FIELDS.isdisjoint(wire):
        out.update(_check_dependencies(job_id, wire))
    if not _FLOW_FIELDS.isdisjoint(wire):
        out.update(check_flow(job_id, wire))
    if "tc" in wire:  # a bad one is left out, not rejected: the job runs, untraced
        carried = trace_context(wire["tc"])
        if carried is not None:
            out["tc"] = carried
    return out


def trace_context(value: Any) -> dict[str, str] | None:
    """``value`` as a job's trace context, or None when it cannot be one.

    Kept: a ``traceparent`` of the W3C form (``version-traceid-spanid-flags``: 2, 32, 16 and
    2 lowercase hex digits, ids not all zeros, version not ``ff``), and ``tracestate`` and
    ``baggage`` when each is 1 to MAX_TRACE_VALUE_CHARS printable ASCII characters. Not an
    object, more than MAX_TRACE_ENTRIES entries or no valid traceparent gives None; other
    keys, and a tracestate or baggage that does not fit, are left out.
    """
    if not isinstance(value, dict) or len(value) > MAX_TRACE_ENTRIES:
        return None
    parent = value.get("traceparent")
    if not isinstance(parent, str) or not _TRACEPARENT_RE.fullmatch(parent):
        return None
    out = {"traceparent": parent}
    for key in TRACE_KEYS[1:]:
        text = value.get(key)
        if isinstance(text, str) and 0 < len(text) <= MAX_TRACE_VALUE_CHARS \
                and text.isascii() and text.isprintable():
            out[key] = text
    return out


def _check_dependencies(job_id: str, wire: dict[str, Any]) -> dict[str, Any]:
    """``dep`` (parent ids), ``af`` (allow_failure) and ``pr`` (pass_results), checked."""
    out: dict[str, Any] = {}
    for name, option in (("af", "allow_failure"), ("pr", "pass_results")):
        value = wire.get(name, False)
        if not isinstance(value, bool):
            raise JobSpecError(f"job {job_id}: {option} must be true or false, got {_shown(value)}")
        if value:
            out[name] = True
    parents = wire.get("dep")
    if parents is None:
        if out:
            raise JobSpecError(f"job {job_id}: allow_failure and pass_results need depends_on")
        return out
    if not isinstance(parents, list) or not parents \
            or not all(isinstance(p, str) and p for p in parents):
        raise JobSpecError(f"job {job_id}: depends_on must be a non-empty list of job ids")
    if len(parents) > MAX_PARENTS:
        raise JobSpecError(f"job {job_id}: {len(parents)} parents; at most {MAX_PARENTS} allowed")
    if job_id in parents:
        raise JobSpecError(f"job {job_id}: a job cannot depend on itself")
    if len(set(parents)) != len(parents):
        twice = _first_repeat(parents)
        raise JobSpecError(f"job {job_id}: parent {_shown(twice)} is named twice in depends_on")
    for parent in parents:
        _check_id(parent)
    out["dep"] = parents
    return out


def _first_repeat(items: list[str]) -> str | None:
    """The first item equal to one before it (None: all differ)."""
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def _shown(value: Any) -> str:
    """``value`` for an error message: short, and safe for whatever a hostile writer sent
    (a repr of a deeply nested value can recurse past Python's limit)."""
    if value is None or isinstance(value, str | int | float):
        try:
            text = repr(value)
        except ValueError:  # an int too long to print
            return "a huge integer"
        return text if len(text) <= 80 else text[:77] + "..."
    return f"a value of type {type(value).__name__}"


def _check_id(job_id: Any) -> str:
    """``job_id``, once checked to be a valid job id."""
    if not isinstance(job_id, str) or not job_id:
        raise JobSpecError(f"job id must be a non-empty string, got {_shown(job_id)}")
    if len(job_id) > MAX_ID_CHARS:
        raise JobSpecError(f"job id is {len(job_id)} characters; at most {MAX_ID_CHARS} allowed")
    # The ASCII test is the fast path: printable ASCII holds no whitespace but the space.
    plain = job_id.isascii() and job_id.isprintable() and " " not in job_id
    if not plain and (not job_id.isprintable() or any(c.isspace() for c in job_id)):
        raise JobSpecError(f"job id {_shown(job_id)} must be printable and contain no whitespace")
    return job_id


def _check_limits(job_id: str, wire: dict[str, Any], out: dict[str, Any]) -> None:
    """``to``, ``mr`` and ``nb`` checked into ``out`` (absent or zero ones left out)."""
    timeout = wire.get("to")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
            0 < timeout <= MAX_TIMEOUT_S
        ):
            raise JobSpecError(f"job {job_id}: timeout must be a number of seconds in "
                               f"(0, {MAX_TIMEOUT_S}], got {_shown(timeout)}")
        out["to"] = timeout
    retries = wire.get("mr")
    if retries is not None:
        if isinstance(retries, bool) or not isinstance(retries, int) or not (
            0 <= retries <= MAX_RETRIES_LIMIT
        ):
            raise JobSpecError(f"job {job_id}: max_retries must be an integer in "
                               f"[0, {MAX_RETRIES_LIMIT}], got {_shown(retries)}")
        out["mr"] = retries
    run_at = wire.get("nb", 0)
    if isinstance(run_at, bool) or not isinstance(run_at, int) or run_at < 0:
        raise JobSpecError(f"job {job_id}: run_at must be epoch milliseconds, got {_shown(run_at)}")
    if run_at:
        out["nb"] = run_at


def json_problem(value: Any, max_bytes: int, depth_used: int = 0) -> str | None:
    """Why ``value`` cannot be stored and carried as JSON by fleet, or None if it can (the
    reason reads after "is" / "are": ``"nested deeper than 128 levels"``).

    Too big (over ``max_bytes`` encoded), nested deeper than ``MAX_JSON_DEPTH`` (not counting
    ``depth_used`` levels of the caller's own wrapping), or not encodable at all (an integer
    past 64 bits, a non-string key, a lone surrogate).
    """
    try:
        body = orjson.dumps(value)
    except TypeError as exc:
        if "Recursion" in str(exc):  # orjson's own depth limit, past ours
            return f"nested deeper than {MAX_JSON_DEPTH} levels"
        return f"not encodable as JSON ({exc})"
    if len(body) > max_bytes:
        return f"{len(body)} bytes encoded; at most {max_bytes} allowed"
    # orjson writes NaN and Infinity as null: look for them only where a null was written.
    if b"null" in body and _has_non_finite(value):
        return "not JSON (NaN or Infinity is not a JSON number)"
    # Each level opens a bracket, so few brackets (or bytes) prove a shallow value without a
    # second pass.
    limit = MAX_JSON_DEPTH + depth_used
    if len(body) > limit and body.count(b"[") + body.count(b"{") > limit and _too_deep(
            value, limit):
        return f"nested deeper than {MAX_JSON_DEPTH} levels"
    return None


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _too_deep(value: Any, depth: int) -> bool:
    """True if ``value`` nests more than ``depth`` levels: orjson itself counts, on the value
    wrapped in as many lists as its limit leaves over."""
    for _ in range(_ORJSON_MAX_DEPTH - depth):
        value = [value]
    try:
        orjson.dumps(value)
    except TypeError:
        return True
    return False


# A job file's field and the wire key it becomes. A *truthy* field is sent only when true
# (as ``to_wire`` leaves out an empty list, 0 or false); the others whenever they are not
# null. ``depends_on`` (``dep``) is checked on its own: ``_file_parents``.
_FILE_WIRE = {"args": ("a", True), "kwargs": ("k", True), "timeout": ("to", False),
              "max_retries": ("mr", False), "run_at_ms": ("nb", True),
              "allow_failure": ("af", True), "pass_results": ("pr", True),
              "key": ("ky", False), "priority": ("py", True), "expires_s": ("ex", False)}
_FILE_FIELDS = frozenset(("id", "func", "payload", "queue", "depends_on", *_FILE_WIRE))
# The wire key of each JobSpec field (``JobSpec.from_wire``).
_SPEC_OF_WIRE = (("a", "args"), ("k", "kwargs"), ("to", "timeout_s"), ("mr", "max_retries"),
                 ("nb", "run_at_ms"), ("dep", "depends_on"), ("af", "allow_failure"),
                 ("pr", "pass_results"), ("ky", "key"), ("py", "priority"),
                 ("ex", "expires_s"))


def file_entry_wire(entry: Any, default_func: str = DEFAULT_FUNC) -> dict[str, Any]:
    """The wire form of one entry of a job file, checked (``validate_spec``): what
    ``spec_from_file_entry(entry).to_wire()`` would give, without building the JobSpec.

    Accepts fleet's own fields (``id``, ``func``, ``args``, ``kwargs``, ``queue``, ``timeout``,
    ``max_retries``, ``run_at_ms``, ``depends_on``, ``allow_failure``, ``pass_results``,
    ``key``, ``priority``, ``expires_s``) and
    the original plan's ``{"id": ..., "payload": {...}}``,
    where ``payload`` is the kwargs and a missing ``func`` means ``default_func``.

    Raises:
        JobSpecError: an unknown field, or a job ``validate_spec`` refuses.
    """
    if not isinstance(entry, dict):
        raise JobSpecError(f"each job must be a JSON object, got {type(entry).__name__}")
    if not _FILE_FIELDS.issuperset(entry):
        unknown = sorted(set(entry) - _FILE_FIELDS)
        raise JobSpecError(f"job {_shown(entry.get('id'))}: unknown field(s) {', '.join(unknown)}")
    if "payload" in entry:
        if "kwargs" in entry:
            raise JobSpecError(f"job {_shown(entry.get('id'))}: give either payload or kwargs, "
                               "not both")
        entry = {**entry, "kwargs": entry["payload"]}
    wire: dict[str, Any] = {"id": entry["id"] if "id" in entry else new_job_id(),
                            "f": entry.get("func", default_func),
                            "q": entry.get("queue", DEFAULT_QUEUE)}
    for name, value in entry.items():  # an entry names few fields: walk those it names
        sent = _FILE_WIRE.get(name)
        if sent is not None and (value if sent[1] else value is not None):
            wire[sent[0]] = value
    if "depends_on" in entry and (parents := _file_parents(entry)):
        wire["dep"] = parents
    validate_spec(wire)
    return wire


def spec_from_file_entry(entry: Any, default_func: str = DEFAULT_FUNC) -> JobSpec:
    """One entry of a job file as a JobSpec (its fields: ``file_entry_wire``).

    Raises:
        JobSpecError: as ``file_entry_wire``.
    """
    return JobSpec.from_wire(file_entry_wire(entry, default_func))


def _file_parents(entry: dict[str, Any]) -> list[Any]:
    parents = entry.get("depends_on", ())
    if not isinstance(parents, list | tuple):
        raise JobSpecError(f"job {_shown(entry.get('id'))}: depends_on must be a list of job ids")
    return list(parents)
