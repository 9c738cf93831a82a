"""Running one job: check the message, resolve its function, call it under its timeout, ack.

A message whose seal does not open (when a dispatch key is set) is dropped unrun and unacked:
nobody dispatched it, so no ack is owed, and an ack would let a forger fail a real job.
A message is refused (ack ``fail`` with ``fin``: retrying cannot help) when its fields have
the wrong types, its function's module is not allow-listed or cannot be imported
(imports.py), or its result is not JSON (NaN and Infinity included) or encodes to more than
``fleet.job.MAX_PAYLOAD_BYTES``. Anything the function
raises, a soft timeout included, is an ordinary ``fail``.
The hard timeout (a job that ignores the soft one) belongs to the supervisor (pool.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty

from ..clock import now_ms
from ..context import CurrentJob, _current
from ..errors import BadMessage, JobRejected, ResultNotJSON, ResultTooLarge
from ..job import MAX_PAYLOAD_BYTES
from ..protocol.ack import encode_ack
from ..protocol.signing import ACK, DISPATCH, SEALED, BurstLog, Seal, SignatureError
from ..tracing import run_outcome, run_span
from .imports import AllowList, resolve
from .progress import ProgressCourier
from .wire import Identity, error_text, make_ack

if TYPE_CHECKING:  # typeshed has no _signal: it is signal's functions, without the enum wrappers
    import signal as _signal
else:
    import _signal

TRACEBACK_MAX_BYTES = 8 * 1024  # kept per failed attempt, in the ack and the job's record
_SIGALRM = int(signal.SIGALRM)
_ITIMER_REAL = int(signal.ITIMER_REAL)

logger = logging.getLogger(__name__)

_running: list[tuple[str, int]] = []


def current_job() -> tuple[str, int] | None:
    """``(job id, attempt)`` of the job this executor is running, or None outside a job.

    For job functions that must tell their attempts apart (the chaos runner's execution log).
    """
    return _running[-1] if _running else None




class SoftTimeout(UnixSignalDeathPenalty):
    """rq's SIGALRM death penalty with sub-second precision (setitimer instead of alarm),
    restoring the previous SIGALRM handler afterwards."""

    def __init__(self, timeout_s: float) -> None:
        shown = int(timeout_s) if float(timeout_s).is_integer() else timeout_s
        # rq's timeouts carry no annotations
        super().__init__(shown, JobTimeoutException)  # type: ignore[no-untyped-call, unused-ignore]
        self._timeout_s = float(timeout_s)
        self._previous: Any = signal.SIG_DFL

    # _signal.signal, not signal.signal: the wrapper's enum conversions (an exception raised
    # and caught for any handler that is a function) cost more than the job, twice per job.
    def setup_death_penalty(self) -> None:
        self._previous = _signal.signal(_SIGALRM, self.handle_death_penalty)
        _signal.setitimer(_ITIMER_REAL, self._timeout_s)

    def cancel_death_penalty(self) -> None:
        _signal.setitimer(_ITIMER_REAL, 0)
        _signal.signal(_SIGALRM, self._previous)


def call(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], timeout_s: float
         ) -> Any:
    """``fn(*args, **kwargs)`` under a soft timeout; a coroutine is run with asyncio.run.

    Raises:
        JobTimeoutException: the timeout passed (rq's exception).
    """
    with SoftTimeout(timeout_s):
        result = fn(*args, **kwargs)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
    return result


class Runner:
    """Turns one dispatch message into one encoded ack."""

    def __init__(self, identity: Identity, allow: AllowList, default_timeout_s: float,
                 dispatch: Seal | None = None, ack: Seal | None = None) -> None:
        self.identity = identity
        self.allow = allow
        self.default_timeout_s = default_timeout_s
        self.dispatch = dispatch
        self.ack = ack
        self.refused = 0
        self._burst = BurstLog(logger)
        self._resolved: dict[str, Callable[..., Any]] = {}
        self.last_error = ""  # the ``e`` of the last failed attempt, for the job's log line
        self.progress: ProgressCourier | None = None  # None: progress reports are dropped

    @classmethod
    def from_settings(cls, settings: Any, identity: Identity) -> Runner:
        return cls(identity, AllowList(settings.allow), settings.task_timeout_s,
                   Seal.of(settings, DISPATCH), Seal.of(settings, ACK))

    def opened(self, raw: bytes) -> bytes | None:
        """The body of a dispatch message whose seal opens (``raw`` when no key is set);
        None, counted and logged once per burst, when it does not."""
        if not self.dispatch:
            if not raw.startswith(SEALED):
                return raw
            self.refused += 1
            self._burst.rejected("dispatch", "a sealed message, but this worker has no "
                                 "dispatch_key or signing_key to open it")
            return None
        try:
            return self.dispatch.open(raw)[1]
        except SignatureError as exc:
            self.refused += 1
            self._burst.rejected("dispatch", f"{exc}; dropped unrun: {raw[:120]!r}")
            return None

    def seal_ack(self, body: bytes) -> bytes:
        """An encoded ack, sealed when a worker key is set."""
        return self.ack.seal(body, now_ms()) if self.ack else body

    def ack_fields(self, message: dict[str, Any]) -> dict[str, Any]:
        """With sealed acks, the enqueue time the message carried: the controller then tells
        this job's acks from those of an earlier job that had the same id."""
        return {"eq": message["eq"]} if self.ack and "eq" in message else {}

    def timeout_of(self, message: dict[str, Any]) -> float:
        """The message's ``to``, or the worker's default when it has none (or a bad one)."""
        timeout = message.get("to")
        if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
            return float(timeout)
        return self.default_timeout_s

    def run(self, message: dict[str, Any], started_ms: int | None = None) -> tuple[bytes, bool]:
        """Run the job in ``message``. Returns the encoded ack and whether it succeeded."""
        with run_span(message) as span:  # a shared no-op without the otel extra
            ack, ok = self._run(message, started_ms)
            run_outcome(span, ok)
        return ack, ok

    def _run(self, message: dict[str, Any], started_ms: int | None) -> tuple[bytes, bool]:
        started_ms = now_ms() if started_ms is None else started_ms
        try:
            fn = self._prepare(message)
            timeout_s = self.timeout_of(message)
            _running.append((message["id"], message["n"]))
            courier = self.progress
            token = _current.set(_context_of(message, started_ms, timeout_s, courier))
            try:
                result = call(fn, message.get("a") or [], message.get("k") or {}, timeout_s)
            finally:
                _current.reset(token)
                _running.pop()
                if courier is not None:
                    courier.forget()
        except (Exception, SystemExit) as exc:
            return self._failure(message, started_ms, exc), False
        try:
            return self.seal_ack(encode_success(message, result, self.identity, started_ms,
                                                **self.ack_fields(message))), True
        except JobRejected as problem:
            return self._failure(message, started_ms, problem), False

    def _prepare(self, message: dict[str, Any]) -> Callable[..., Any]:
        func = message.get("f")
        if not isinstance(func, str):
            raise BadMessage(f"f must be a string naming a function, got {func!r}")
        if not isinstance(message.get("a", []), list):
            raise BadMessage("a (args) must be a list")
        if not isinstance(message.get("k", {}), dict):
            raise BadMessage("k (kwargs) must be an object")
        if message.get("to") is not None and self.timeout_of(message) != message["to"]:
            raise BadMessage(f"to (timeout) must be a positive number, got {message['to']!r}")
        if not isinstance(message.get("pr", {}), dict):
            raise BadMessage("pr (parent results) must be an object")
        fn = self._resolved.get(func)
        if fn is None:
            fn = self._resolved[func] = resolve(func, self.allow)
        return fn

    def _failure(self, message: dict[str, Any], started_ms: int, exc: BaseException) -> bytes:
        final = isinstance(exc, JobRejected)
        logger.debug("job %s attempt %s failed", message.get("id"), message.get("n"),
                     exc_info=not final)
        fields: dict[str, Any] = {"e": _error_of(exc), **self.ack_fields(message)}
        self.last_error = fields["e"]
        if final:
            fields["fin"] = True  # a JobRejected says all in "e": its traceback is fleet's own
        else:
            fields["tb"] = traceback_text(exc)
        return self.seal_ack(encode_ack(make_ack(message["id"], message["n"], "fail",
                                             self.identity, started_ms, **fields)))


def _context_of(message: dict[str, Any], started_ms: int, timeout_s: float,
                courier: ProgressCourier | None = None) -> CurrentJob:
    """``fleet.current_job()`` for the job in ``message`` (docs/protocol.md §2)."""
    enqueued = message.get("eq")
    job = CurrentJob(id=message["id"], attempt=message["n"], queue=str(message.get("q", "")),
                     enqueued_ms=enqueued if isinstance(enqueued, int) else None,
                     deadline_ms=started_ms + int(timeout_s * 1000),
                     parent_results=dict(message.get("pr") or {}))
    return job if courier is None else job.reporting_to(courier.reporter(job.id, job.attempt))


def _error_of(exc: BaseException) -> str:
    """``error_text(exc)``, even for an exception whose ``str()`` raises or holds a lone
    surrogate (job code decides both; neither may stop the executor)."""
    try:
        text = error_text(exc)
    except Exception as problem:  # noqa: BLE001 - whatever a hostile __str__ raises
        text = f"{type(exc).__name__}: <str() of the exception raised {type(problem).__name__}>"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def traceback_text(exc: BaseException, limit_bytes: int = TRACEBACK_MAX_BYTES) -> str:
    """The traceback of ``exc`` from the job's own first frame (the runner's are left out),
    at most ``limit_bytes`` of UTF-8: the start and the end are kept, the middle of a long
    one (deep recursion) is cut and says how much."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    raw = text.encode("utf-8", "backslashreplace")  # a lone surrogate would stop orjson
    if len(raw) <= limit_bytes:
        return raw.decode("utf-8")
    marker = f"\n... {len(raw) - limit_bytes} bytes of traceback cut ...\n".encode()
    head = (limit_bytes - len(marker)) // 4
    tail = limit_bytes - len(marker) - head
    return (raw[:head] + marker + raw[-tail:]).decode("utf-8", "ignore")


def encode_success(message: dict[str, Any], result: Any, identity: Identity,
                   started_ms: int, **fields: Any) -> bytes:
    """The encoded ``ok`` ack carrying ``result``.

    The size is checked on the encoded ack first, so a normal result is encoded only once.

    Raises:
        ResultNotJSON: orjson cannot encode the result.
        ResultTooLarge: the result is more than MAX_PAYLOAD_BYTES of JSON.
    """
    ack = make_ack(message["id"], message["n"], "ok", identity, started_ms, r=result, **fields)
    try:
        body = encode_ack(ack)
    except TypeError as exc:
        raise ResultNotJSON(f"{message.get('f')} returned {type(result).__name__}, which is "
                            f"not JSON ({exc})") from None
    if len(body) > MAX_PAYLOAD_BYTES:
        size_bytes = len(orjson.dumps(result))
        if size_bytes > MAX_PAYLOAD_BYTES:
            raise ResultTooLarge(f"the JSON result of {message.get('f')} is {size_bytes} "
                                 f"bytes, at most {MAX_PAYLOAD_BYTES} allowed")
    # orjson writes NaN and Infinity as null; only a body with a null can hold one (checked
    # after the size, so that the walk is over at most MAX_PAYLOAD_BYTES of JSON).
    if b"null" in body and has_non_finite(result):
        raise ResultNotJSON(f"{message.get('f')} returned a NaN or Infinity float, which JSON "
                            f"cannot hold")
    return body


def has_non_finite(value: Any) -> bool:
    """True when ``value`` (JSON-encodable, so finitely deep) holds a NaN or an Infinity."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False
