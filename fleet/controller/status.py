"""What ``fleet status`` shows, assembled from the table, the log and the heartbeats."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ..state import JobTable
from .limiter import held_back

if TYPE_CHECKING:
    from .loop import Controller


def build_status(ctl: Controller, now_ms: int) -> dict[str, Any]:
    """The status document (``fleet status --json`` prints it as is)."""
    table = ctl.journal.table
    data: dict[str, Any] = table.stats()
    data.update({
        "namespace": ctl.settings.namespace,
        "controller": {"pid": os.getpid(), "host": ctl.fence.host if ctl.fence else None,
                       "uptime_s": round(time.monotonic() - ctl.started_s, 1),
                       "recovery_ms": round(ctl.log.report.duration_ms, 1),
                       "recovery": ctl.log.report.summary()},
        "workers": [_worker(beat, now_ms) for beat in ctl.liveness.beats],
        "executors": ctl.liveness.executors,
        "busy": sum(int(b.get("busy") or 0) for b in ctl.liveness.beats),
        "in_flight_waiting": _waiting_for_a_worker(ctl),
        "wal": {"bytes": ctl.log.writer.total_bytes, "last_seq": table.last_seq,
                "fsync": ctl.settings.fsync, "fsyncs": ctl.log.writer.fsyncs},
        "snapshot": _snapshot(ctl),
        "rates_per_s": ctl.housekeeping.samples.rates_per_s(),
        "oldest_pending_age_s": _oldest_pending_age(table, now_ms),
        "stale_acks": ctl.reconciler.stale_acks,
        "malformed": {"intake": ctl.intake.malformed, "acks": ctl.reconciler.malformed_acks,
                      "control": ctl.malformed_control,
                      "heartbeats": ctl.liveness.malformed_beats},
        "rejected_signatures": dict(ctl.gate.rejected),
        "held_back": held_back(table, ctl.dispatcher.buckets),
    })
    return data


def _waiting_for_a_worker(ctl: Controller) -> int:
    """In-flight jobs no worker reports yet: dispatched, their messages still in Redis."""
    running = ctl.liveness.running_on
    return sum(1 for job in ctl.journal.table.in_flight.values()
               if running.get(job.id, (None,))[0] != job.attempt)


def _worker(beat: dict[str, Any], now_ms: int) -> dict[str, Any]:
    jobs = beat.get("jobs") or []
    seen = beat.get("ts")
    return {"id": beat.get("id"), "host": beat.get("host"), "pid": beat.get("pid"),
            "executors": beat.get("executors"), "busy": beat.get("busy", len(jobs)),
            "queues": beat.get("queues"), "done": beat.get("done"),
            "failed": beat.get("failed"),
            "seen_s_ago": round((now_ms - seen) / 1000, 1) if isinstance(seen, int) else None}


def _snapshot(ctl: Controller) -> dict[str, Any]:
    taker = ctl.snapshots
    finished = ctl.housekeeping.snapshots.last_finished_s()
    return {"last_seq": taker.last_seq,
            "age_s": round(time.time() - finished, 1) if finished else None,
            "duration_s": round(taker.last_duration_s, 3),
            "pause_ms": round(taker.last_pause_s * 1000, 2),
            "running": taker.running is not None}


def _oldest_pending_age(table: JobTable, now_ms: int) -> float | None:
    oldest = table.oldest_ready_enqueued_ms()
    return round((now_ms - oldest) / 1000, 3) if oldest is not None else None
