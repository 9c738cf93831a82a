"""Rate limits: a token bucket per queue, and what each kind of limit holds back.

A queue's ``rate`` of N per period refills its bucket continuously at N/period and holds at
most ``fleet.flow.burst`` tokens (a tenth of a second's worth, at least one); a dispatch
spends one. The bucket is the controller's, not the log's: a restarted controller starts
each bucket full, so a restart may let one burst through early (docs/flow-control.md).
Concurrency and per-key limits are the table's (counted from the log, rebuilt by recovery).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..flow import burst
from ..state import IN_FLIGHT, PENDING, JobTable
from ..state import events as ev
from .journal import Journal

EXPIRED = "expired"  # the reason of a job cancelled unstarted past its expiry
KINDS = ("concurrency", "rate", "per_key")


class Bucket:
    """One queue's tokens."""

    def __init__(self, rate: list[float], now_ms: int) -> None:
        self.rate = list(rate)
        self.per_ms = rate[0] / rate[1] / 1000
        self.capacity = burst(rate)
        self.tokens = self.capacity
        self.at_ms = now_ms

    def available(self, now_ms: int) -> int:
        """Whole tokens now (a clock stepped back adds none)."""
        if now_ms > self.at_ms:
            self.tokens = min(self.capacity, self.tokens + (now_ms - self.at_ms) * self.per_ms)
            self.at_ms = now_ms
        return int(self.tokens)

    def spend(self, count: int) -> None:
        self.tokens -= count


class Buckets:
    """The bucket of every queue that has a rate, made or remade as its limits say."""

    def __init__(self) -> None:
        self._buckets: dict[str, Bucket] = {}

    def bucket(self, queue: str, limits: dict[str, Any] | None, now_ms: int) -> Bucket | None:
        rate = limits.get("rate") if limits else None
        if rate is None:
            self._buckets.pop(queue, None)
            return None
        bucket = self._buckets.get(queue)
        if bucket is None or bucket.rate != list(rate):
            old, bucket = bucket, Bucket(rate, now_ms)
            if old is not None:  # a new rate keeps what the old bucket held: no fresh burst
                bucket.tokens = min(bucket.capacity, old.tokens)
            self._buckets[queue] = bucket
        return bucket

    def next_token_ms(self, table: JobTable, now_ms: int) -> int | None:
        """When the first bucket of a queue with jobs waiting on it holds a whole token
        again (None: no queue waits on its rate)."""
        times = [now_ms + int((1 - bucket.tokens) / bucket.per_ms) + 1
                 for queue, bucket in self._buckets.items()
                 if bucket.tokens < 1 and table.queue_counts.get(queue, {}).get(PENDING)]
        return min(times, default=None)

    def empty(self, queue: str) -> bool:
        bucket = self._buckets.get(queue)
        return bucket is not None and bucket.tokens < 1


def record_config_limits(journal: Journal, limits: Mapping[str, Mapping[str, Any]]) -> None:
    """Record the config file's limits of each queue that the log holds otherwise (a queue
    the file does not name keeps the log's)."""
    for queue, queue_limits in limits.items():
        if journal.table.limits.get(queue, {}) != queue_limits:
            journal.record(ev.limits(queue, dict(queue_limits)))


def held_back(table: JobTable, buckets: Buckets) -> dict[str, dict[str, int]]:
    """Per queue with limits: how many pending jobs each kind of limit holds back now.

    Concurrency and rate hold back the queue's pending jobs while they bind; per-key the
    jobs queued for keys at their limit (entries still in line, so a figure, not a census).
    """
    held: dict[str, dict[str, int]] = {}
    for queue, limits in table.limits.items():
        counts = table.queue_counts.get(queue, {})
        pending = counts.get(PENDING, 0)
        kinds = dict.fromkeys(KINDS, 0)
        if "concurrency" in limits and counts.get(IN_FLIGHT, 0) >= limits["concurrency"]:
            kinds["concurrency"] = pending
        elif "rate" in limits and buckets.empty(queue):
            kinds["rate"] = pending
        lanes = table._lanes.get(queue)
        if lanes is not None and lanes.parked:
            kinds["per_key"] = lanes.parked_entries()  # from the parked keys: few, not all
        held[queue] = kinds
    return held
