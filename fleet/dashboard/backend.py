"""The dashboard's one way to the controller: control requests, as the CLI sends them.

The client is synchronous (redis-py); requests run in Starlette's thread pool, one at a time
per dashboard (a lock), so a burst of browser requests queues here instead of in Redis.
The throughput chart comes from the status's running totals, sampled every ``sample_s``
and kept for an hour in this process (a restarted dashboard starts its chart again; the
controller keeps no history of rates).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from starlette.concurrency import run_in_threadpool

from ..client import Client
from ..state.listing import DELAYED, encode_cursor

HISTORY_S = 3600.0
LIST_REQUESTS = 5  # pages asked to fill one listing: bounded work whatever the table holds
# The listing's delayed heap from its start: scheduled and retrying jobs without a walk of
# every ready line before them.
DELAYED_START = encode_cursor(DELAYED, [0, 0])


class Backend:
    """Control requests for the pages and the API, and the sampled totals for the chart."""

    def __init__(self, client: Client, sample_s: float = 10.0, timeout_s: float = 5.0):
        self.client = client
        self.sample_s = sample_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self.samples: deque[tuple[float, int, int]] = deque(
            maxlen=int(HISTORY_S / sample_s) + 2)

    def _request(self, command: str, **args: Any) -> Any:
        with self._lock:
            return self.client.request(command, timeout_s=self.timeout_s, **args)

    async def request(self, command: str, **args: Any) -> Any:
        return await run_in_threadpool(self._request, command, **args)

    async def status(self) -> dict[str, Any]:
        data: dict[str, Any] = await self.request("status")
        self._note(data)
        return data

    async def jobs(self, state: str | None, queue: str | None, limit: int,
                   cursor: str | None) -> dict[str, Any]:
        """Up to ``limit`` jobs, asking up to LIST_REQUESTS pages (a rare state among many
        jobs comes back in short pages); ``cursor`` None in the answer: the end."""
        jobs: list[dict[str, Any]] = []
        for _ in range(LIST_REQUESTS):
            page = await self.request("jobs", state=state, queue=queue,
                                      limit=limit - len(jobs), cursor=cursor)
            jobs += page["jobs"]
            cursor = page["cursor"]
            if cursor is None or len(jobs) >= limit:
                break
        return {"jobs": jobs, "cursor": cursor}

    def _note(self, status: dict[str, Any]) -> None:
        totals = status.get("totals") or {}
        now = time.time()
        if self.samples and now - self.samples[-1][0] < self.sample_s:
            return
        self.samples.append((now, int(totals.get("completed", 0)), int(totals.get("failed", 0))))

    def history(self) -> dict[str, list[float]]:
        """Per-minute-ish rates between samples: time (epoch s), completed/s and failed/s."""
        points = list(self.samples)
        out: dict[str, list[float]] = {"t": [], "completed_per_s": [], "failed_per_s": []}
        for (t0, c0, f0), (t1, c1, f1) in zip(points, points[1:], strict=False):
            seconds = max(t1 - t0, 0.001)
            out["t"].append(round(t1, 1))
            out["completed_per_s"].append(round(max(c1 - c0, 0) / seconds, 3))
            out["failed_per_s"].append(round(max(f1 - f0, 0) / seconds, 3))
        return out
