"""What ``fleet status`` shows, assembled from the table, the log and the heartbeats."""

from __future__ import annotations

import os
import time
from typing import Any


def build_status(ctl: Any, now_ms: int) -> dict[str, Any]:
    """The status document (``fleet status --json`` prints it as is)."""
    table = ctl.journal.table
    data: dict[str, Any] = table.stats()
    data.update({
        "namespace": ctl.settings.namespace,
        "controller": {"pid": os.getpid(), "host": ctl.fence.host if ctl.fence else None,
                       "uptime_s": round(time.monotonic() - ctl.started_s, 1),
                       "recovery_ms": round(ctl.log.report.duration_ms, 1),
                       "recovery": ctl.log.report.summary()},
        "workers": [_worker(beat, now_ms) for beat in ctl.beats],
        "executors": ctl.executors,
        "busy": sum(int(b.get("busy") or 0) for b in ctl.beats),
        "in_flight_waiting": _waiting_for_a_worker(ctl),
        "wal": {"bytes": ctl.log.writer.total_bytes, "last_seq": table.last_seq,
                "fsync": ctl.settings.fsync, "fsyncs": ctl.log.writer.fsyncs},
        "snapshot": _snapshot(ctl),
        "rates_per_s": _rates(ctl, now_ms),
        "oldest_pending_age_s": _oldest_pending_age(table, now_ms),
        "stale_acks": ctl.reconciler.stale_acks,
        "malformed": {"intake": ctl.intake.malformed, "acks": ctl.reconciler.malformed_acks,
                      "control": ctl.malformed_control,
                      "heartbeats": ctl.reconciler.malformed_beats},
        "rejected_signatures": dict(ctl.gate.rejected),
    })
    return data


def _waiting_for_a_worker(ctl: Any) -> int:
    """In-flight jobs no worker reports yet: dispatched, their messages still in Redis."""
    running = ctl.reconciler.running_on
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


def _snapshot(ctl: Any) -> dict[str, Any]:
    taker = ctl.snapshots
    # Before this controller takes one, the snapshot recovery loaded is the last.
    finished = taker.last_finished or ctl._recovered_snapshot_s
    return {"last_seq": taker.last_seq,
            "age_s": round(time.time() - finished, 1) if finished else None,
            "duration_s": round(taker.last_duration_s, 3),
            "pause_ms": round(taker.last_pause_s * 1000, 2),
            "running": taker.running is not None}


def _rates(ctl: Any, now_ms: int) -> dict[str, float]:
    samples = ctl._samples
    if len(samples) < 2:
        return {}
    (t0, first), (t1, last) = samples[0], samples[-1]
    seconds = max((t1 - t0) / 1000, 0.001)
    return {name: round((last[name] - first[name]) / seconds, 2)
            for name in ("enqueued", "completed", "failed", "dead")}


def _oldest_pending_age(table: Any, now_ms: int) -> float | None:
    oldest = table.oldest_ready_enqueued_ms()
    return round((now_ms - oldest) / 1000, 3) if oldest is not None else None
