"""Jobs flowing through a real controller and worker while the Redis master serving the
namespace is SIGKILLed and a replica takes its place (test_sentinel.py, test_cluster.py)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fleet.client import Client
from fleet.testing.cluster import LocalFleet

from .helpers import record_jobs, terminal_counts, wal_events

MAX_BATCHES_DURING = 40


@dataclass
class FailoverRun:
    """What a run measured: seconds from the kill to the replica's promotion and to jobs
    completing again, which jobs were accepted, and how each ended in the record."""

    promoted_s: float = 0.0
    flowing_s: float = 0.0
    accepted: set[str] = field(default_factory=set)
    enqueue_errors: list[str] = field(default_factory=list)
    terminal: dict[str, int] = field(default_factory=dict)
    dead: int = 0


def _completed(local: LocalFleet) -> int | None:
    try:
        return int(local.client(receipt_timeout_s=2).status()["states"]["completed"])
    except Exception:  # noqa: BLE001 - the controller is between masters
        return None


def _enqueue_during(client: Client, log_path: str, run: FailoverRun,
                    stop: threading.Event) -> None:
    """Enqueue a batch every 0.3 s across the failover until told to stop; note what was
    accepted (the client re-sends what Redis lost, within its receipt timeout)."""
    for index in range(MAX_BATCHES_DURING):
        jobs = record_jobs(20, log_path, sleep_ms=10, prefix=f"during{index}")
        try:
            receipts = client.enqueue_many(jobs)
            run.accepted |= {r.id for r in receipts if r.status in ("accepted", "duplicate")}
        except Exception as exc:  # noqa: BLE001 - counted, and the test shows them
            run.enqueue_errors.append(f"{type(exc).__name__}: {exc}")
        if stop.wait(0.3):
            break


def run_through_failover(local: LocalFleet, kill: Callable[[], int],
                         promoted: Callable[[int], int]) -> FailoverRun:
    """Start a controller and a worker on ``local``, enqueue 300 jobs, and once 60 are done
    ``kill()`` the master (returns its port) while more are enqueued; ``promoted(old port)``
    waits for the replica to take over. Returns once every accepted job has ended."""
    run = FailoverRun()
    log_path = os.path.join(local.workdir, "exec.log")
    before = record_jobs(300, log_path, sleep_ms=10, prefix="before")
    local.controller()
    local.worker(2)
    receipts = local.client().enqueue_many(before)
    run.accepted |= {r.id for r in receipts if r.status == "accepted"}
    at_kill = local.wait_for(lambda s: s["states"]["completed"] >= 60)["states"]["completed"]
    stop = threading.Event()
    client = local.client(receipt_timeout_s=30)
    client.status()  # a client that has reached Redis once retries across a failover
    enqueuer = threading.Thread(target=_enqueue_during, args=(client, log_path, run, stop))
    enqueuer.start()
    old_port = kill()  # may first stop the replica for a while: the clock starts after
    killed_at = time.monotonic()
    promoted(old_port)
    run.promoted_s = time.monotonic() - killed_at
    while (_completed(local) or 0) < at_kill + 20:
        assert time.monotonic() - killed_at < 60, "jobs did not flow again within 60 s"
        time.sleep(0.05)
    run.flowing_s = time.monotonic() - killed_at
    time.sleep(1.0)  # a few batches more on the new master
    stop.set()
    enqueuer.join()
    status = local.wait_for(
        lambda s: sum(s["states"][k] for k in ("completed", "dead", "cancelled"))
        >= len(run.accepted), timeout_s=90)
    run.dead = status["states"]["dead"]
    local.stop_all()
    run.terminal = dict(terminal_counts(wal_events(local.data_dir)))
    return run


def assert_exactly_once(run: FailoverRun) -> None:
    """Every accepted job ended once in the record, none twice, none dead."""
    assert run.dead == 0
    assert {job_id: run.terminal.get(job_id, 0) for job_id in run.accepted} == \
        dict.fromkeys(run.accepted, 1)
    assert [job_id for job_id, count in run.terminal.items() if count > 1] == []


def async_client_round_trip(local: LocalFleet, count: int = 20) -> list[object]:
    """Enqueue ``count`` additions through ``fleet.AsyncClient`` on ``local``'s URL and
    return their results (a controller and a worker must be running)."""
    import asyncio

    from fleet.aio import AsyncClient

    async def round_trip() -> list[object]:
        async with AsyncClient(redis_url=local.redis_url, namespace=local.namespace) as client:
            jobs = [await client.enqueue("tests.jobs:add", i, 1) for i in range(count)]
            return [await job.result(timeout_s=30) for job in jobs]

    return asyncio.run(round_trip())
