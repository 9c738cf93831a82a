"""The events that change the job table, as the plain dicts that the WAL stores.

Events are dicts rather than classes because recovery decodes millions of them: a dict
straight from the JSON decoder costs nothing more to build. Field names are short for the same
reason; ``docs/wal-format.md`` lists them. The constructors below are the only place that
spells an event out, so the rest of the code never writes a field name by hand.

Every event gets ``s`` (its sequence number) from the journal when it is recorded.
"""

from __future__ import annotations

from typing import Any

Event = dict[str, Any]

ENQUEUED = "enq"
DISPATCHED = "disp"
ACKED = "ack"
FAILED = "fail"
EXPIRED = "exp"
RELEASED = "rel"
RETRIED = "retry"
CANCELLED = "cancel"
COMPACTED = "compact"
PAUSED = "pause"
RESUMED = "resume"
BOOTED = "boot"
SCHEDULED = "sched"

ALL_TYPES = frozenset({ENQUEUED, DISPATCHED, ACKED, FAILED, EXPIRED, RELEASED, RETRIED,
                       CANCELLED, COMPACTED, PAUSED, RESUMED, BOOTED, SCHEDULED})


def enqueued(spec: dict[str, Any], at_ms: int, timeout_s: float, max_retries: int) -> Event:
    """A job was accepted. ``spec`` is a validated wire spec (see ``fleet.job``)."""
    return {"t": ENQUEUED, "id": spec["id"], "q": spec["q"], "f": spec["f"], "a": spec["a"],
            "k": spec["k"], "to": spec.get("to", timeout_s), "mr": spec.get("mr", max_retries),
            "nb": spec.get("nb", 0), "ts": at_ms}


def dispatched(job_id: str, attempt: int, lease_deadline_ms: int, at_ms: int) -> Event:
    """Attempt ``attempt`` of a job was leased until ``lease_deadline_ms``."""
    return {"t": DISPATCHED, "id": job_id, "n": attempt, "ld": lease_deadline_ms, "ts": at_ms}


def acked(job_id: str, attempt: int, result: Any, run: dict[str, Any],
          at_ms: int | None = None) -> Event:
    """Attempt ``attempt`` succeeded. ``run`` holds worker, host, start and finish times.

    ``at_ms`` is the controller's time of recording; it, not the worker's clock, dates the
    finish (retention must not depend on a worker's clock being right).
    """
    return {"t": ACKED, "id": job_id, "n": attempt, "r": result, **_run_fields(run),
            "ts": at_ms}


def failed(job_id: str, attempt: int, error: str, run: dict[str, Any], retry_at_ms: int,
           final: bool = False, at_ms: int | None = None) -> Event:
    """Attempt ``attempt`` failed. Retried at ``retry_at_ms`` unless final or out of retries."""
    return {"t": FAILED, "id": job_id, "n": attempt, "e": error, "nb": retry_at_ms,
            "fin": final, **_run_fields(run), "ts": at_ms}


def expired(job_id: str, attempt: int, retry_at_ms: int, at_ms: int) -> Event:
    """The lease of attempt ``attempt`` ran out without an ack: a failed attempt."""
    return {"t": EXPIRED, "id": job_id, "n": attempt, "nb": retry_at_ms, "ts": at_ms}


def released(job_id: str, attempt: int, reason: str, at_ms: int) -> Event:
    """Attempt ``attempt`` was handed back unrun or interrupted; not counted as a failure."""
    return {"t": RELEASED, "id": job_id, "n": attempt, "why": reason, "ts": at_ms}


def retried(job_id: str, at_ms: int) -> Event:
    """An operator sent a dead job back to pending with a fresh retry budget."""
    return {"t": RETRIED, "id": job_id, "ts": at_ms}


def cancelled(job_id: str, at_ms: int) -> Event:
    """A pending or in-flight job was cancelled."""
    return {"t": CANCELLED, "id": job_id, "ts": at_ms}


def compacted(job_ids: list[str]) -> Event:
    """Finished jobs past the retention window are forgotten."""
    return {"t": COMPACTED, "ids": job_ids}


def paused(queue: str) -> Event:
    """Dispatch from ``queue`` stops until it is resumed."""
    return {"t": PAUSED, "q": queue}


def resumed(queue: str) -> Event:
    """Dispatch from ``queue`` starts again."""
    return {"t": RESUMED, "q": queue}


def booted(epoch: int, at_ms: int) -> Event:
    """A controller started with fencing epoch ``epoch``."""
    return {"t": BOOTED, "epoch": epoch, "ts": at_ms}


def scheduled(name: str, fire_ms: int) -> Event:
    """Periodic schedule ``name`` has fired every run up to ``fire_ms`` (its cursor)."""
    return {"t": SCHEDULED, "name": name, "at": fire_ms}


def _run_fields(run: dict[str, Any]) -> dict[str, Any]:
    return {"w": run.get("w"), "h": run.get("h"), "st": run.get("st"), "ft": run.get("ft")}
