"""The chaos run: a real fleet, a mixed workload, faults on a seeded schedule, then the check.

Steps:

1. start a private redis-server, one controller and ``workers`` worker fleets (LocalFleet:
   the same ``fleet controller`` / ``fleet worker`` commands a user runs), with short leases
   and heartbeats so that faults cost seconds, not minutes;
2. enqueue the planned jobs from a thread, re-sending any chunk that got no receipt;
3. poll ``status``; fire each scheduled fault when its share of finished jobs is reached;
4. wait until every confirmed job is finished (or ``deadline_s`` passes);
5. collect the controller's record (status, every job, dead list, spot checks through the CLI),
   stop the fleet, dump the log, and hand everything to the checker.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ...errors import FleetError, JobNotFoundError
from ...localredis import RedisServer
from ..cluster import LocalFleet
from . import checker
from .faults import DEFAULT_COUNTS, Fault, FaultLog, schedule
from .injector import Injector
from .redisfaults import debug_args
from .workload import EXPECTED_STATE, Enqueuer, PlannedJob, plan_jobs

POLL_S = 0.25
# A fault waits this many leases after the one before it. Progress can jump (a stall or an
# out-of-memory Redis holds it back, then the backlog drains at once) past several faults'
# thresholds; fired in the same second, a Redis restart, a killed worker and a killed
# controller make a case no controller can judge: a new controller that never saw the
# restart cannot tell the messages it lost from those the dead worker may have taken, and
# charges their lapse as an attempt (docs/reliability.md, "Known limits"). Spaced, each fault
# is judged on what fleet can know.
FAULT_GAP_LEASES = 2.0
LOOKUP_THREADS = 8
CLI_SPOT_CHECKS = 2


@dataclass
class ChaosConfig:
    """One chaos run. The defaults are ``make chaos``."""

    jobs: int = 20_000
    seed: int | None = None
    faults: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_COUNTS))
    workers: int = 2
    executors: int = 4
    lease_s: float = 2.0
    heartbeat_s: float = 0.2
    backlog: int = 2000
    deadline_s: float = 420.0
    workdir: str | None = None

    def environment(self) -> dict[str, str]:
        return {"FLEET_LEASE_S": str(self.lease_s), "FLEET_HEARTBEAT_S": str(self.heartbeat_s),
                "FLEET_BACKOFF_BASE_S": "0.05", "FLEET_BACKOFF_MAX_S": "0.5",
                "FLEET_RECEIPT_TIMEOUT_S": "5", "FLEET_SHUTDOWN_GRACE_S": "5",
                "FLEET_SNAPSHOT_EVERY_RECORDS": str(max(5000, self.jobs)),
                "FLEET_ALLOW": "fleet.testing.chaos"}


@dataclass
class ChaosResult:
    """The checker's verdict and what the run did."""

    config: ChaosConfig
    seed: int
    verdict: checker.Verdict
    faults: FaultLog
    schedule: list[Fault]
    resends: int
    elapsed_s: float
    finished_in_time: bool
    workdir: str
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict.ok and self.finished_in_time and not self.faults.exits


def run_chaos(config: ChaosConfig, progress: Any = None) -> ChaosResult:
    """Run the workload under faults and check it. ``progress(text)`` gets status lines."""
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(10**6)
    rng = random.Random(seed)
    workdir = config.workdir or tempfile.mkdtemp(prefix="fleet-chaos-")
    say = progress or (lambda text: None)
    log_path, marker_dir = os.path.join(workdir, "executions.log"), os.path.join(workdir, "m")
    os.makedirs(marker_dir, exist_ok=True)
    planned = plan_jobs(config.jobs, rng, log_path, marker_dir)
    redis_server = RedisServer()
    redis_server.extra_args = debug_args(redis_server.binary)
    redis_server.start()
    local = LocalFleet(redis_server.url, workdir=workdir, env=config.environment())
    injector = Injector(local, redis_server, config.workers, config.executors, config.lease_s,
                        workdir)
    faults = schedule({kind: count for kind, count in config.faults.items()
                       if injector.can_inject(kind)}, rng)
    for kind, why in injector.log.left_out.items():
        if config.faults.get(kind):
            say(f"{kind} left out: {why}")
    started = time.monotonic()
    try:
        injector.start()
        enqueuer, in_time = _drive(config, local, injector, planned, faults, say)
        say("collecting the controller's record")
        record = _collect(local, enqueuer.confirmed)
        injector.stop()
        events = _wal_events(local)
    finally:
        local.stop_all()
        redis_server.stop()
    inputs = checker.Inputs(
        kinds={job.id: job.kind for job in planned}, expected=EXPECTED_STATE,
        confirmed=set(enqueuer.confirmed), executions=checker.read_executions(log_path),
        events=events, timeline=checker.read_timeline(log_path), **record)
    verdict = checker.check(inputs)
    notes = [f"{len(enqueuer.rejected)} jobs rejected at intake"] if enqueuer.rejected else []
    notes += [f"{kind} left out: {why}" for kind, why in injector.log.left_out.items()
              if config.faults.get(kind)]
    if len(enqueuer.confirmed) < len(planned):
        notes.append(f"only {len(enqueuer.confirmed)} of {len(planned)} jobs were confirmed")
    return ChaosResult(config, seed, verdict, injector.log, faults, enqueuer.resends,
                       time.monotonic() - started, in_time, workdir, notes)


def _drive(config: ChaosConfig, local: LocalFleet, injector: Injector,
           planned: list[PlannedJob], faults: list[Fault], say: Any) -> tuple[Enqueuer, bool]:
    """Enqueue, fire faults as progress passes their thresholds, wait for the end."""
    client = local.client(receipt_timeout_s=5)
    seen = {"finished": 0, "in_flight": 0, "pending": 0}
    enqueuer = Enqueuer(local.client(receipt_timeout_s=5), planned, lambda: seen["finished"],
                        config.backlog)
    enqueuer.start()
    pending_faults = list(faults)
    deadline = time.monotonic() + config.deadline_s
    last_said = 0.0
    gap_s, last_fault = FAULT_GAP_LEASES * config.lease_s, -math.inf
    try:
        while time.monotonic() < deadline:
            _poll(client, seen)
            if (pending_faults and seen["finished"] >= pending_faults[0].at * config.jobs
                    and time.monotonic() - last_fault >= gap_s):
                last_fault = time.monotonic()
                fault = pending_faults.pop(0)
                say(f"fault at {seen['finished']}/{config.jobs} finished: {fault.kind}")
                injector.fire(fault, seen["in_flight"])
            injector.tick()
            if (enqueuer.done.is_set() and not pending_faults and not injector.busy
                    and seen["finished"] >= len(enqueuer.confirmed)):
                return enqueuer, True
            if time.monotonic() - last_said > 10:
                last_said = time.monotonic()
                say(f"{seen['finished']}/{config.jobs} finished, {seen['pending']} pending, "
                    f"{seen['in_flight']} in flight, {len(enqueuer.confirmed)} confirmed")
            time.sleep(POLL_S)
        return enqueuer, False
    finally:
        enqueuer.stop.set()


def _poll(client: Any, seen: dict[str, int]) -> None:
    try:
        status = client.request("status", timeout_s=2)
    except FleetError:
        return
    states = status["states"]
    # Jobs forgotten by compaction had finished: without them a run whose clock step made the
    # controller compact early would wait for its deadline.
    seen["finished"] = (states["completed"] + states["dead"] + states["cancelled"]
                        + int(status.get("totals", {}).get("compacted") or 0))
    seen["in_flight"] = states["in_flight"]
    seen["pending"] = states["pending"]


def _collect(local: LocalFleet, confirmed: dict[str, str]) -> dict[str, Any]:
    """The controller's record while it still runs: status, dead list, every job."""
    status = _cli_json(local, "status", "--json")
    dead_list = _cli_json(local, "dead", "list", "--json", "--limit", "0")
    client = local.client()

    def lookup(job_id: str) -> tuple[str, dict[str, Any] | None]:
        for _ in range(3):
            try:
                return job_id, client.request("job", timeout_s=10, id=job_id)
            except JobNotFoundError:
                return job_id, None
            except FleetError:
                time.sleep(0.5)
        return job_id, None

    with ThreadPoolExecutor(LOOKUP_THREADS) as pool:
        lookups = dict(pool.map(lookup, sorted(confirmed)))
    spot = sorted(confirmed)[:CLI_SPOT_CHECKS] + sorted(confirmed)[-CLI_SPOT_CHECKS:]
    cli_lookups = {job_id: found for job_id in spot
                   if (found := _cli_job(local, job_id)) is not None}
    return {"status": status, "dead_list": dead_list, "lookups": lookups,
            "cli_lookups": cli_lookups}


def _cli_job(local: LocalFleet, job_id: str) -> dict[str, Any] | None:
    """``fleet job ID --json``; None for a job it does not know (the API lookup says so too)."""
    done = local.cli("job", job_id, "--json", timeout_s=120)
    if done.returncode != 0 and "no job" in done.stderr:
        return None
    if done.returncode != 0:
        raise FleetError(f"fleet job {job_id} failed ({done.returncode}): {done.stderr}")
    record: dict[str, Any] = json.loads(done.stdout)
    return record


def _cli_json(local: LocalFleet, *args: str) -> Any:
    done = local.cli(*args, timeout_s=120)
    if done.returncode != 0:
        raise FleetError(f"fleet {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout)


def _wal_events(local: LocalFleet) -> list[dict[str, Any]]:
    done = local.cli("wal", "dump", "--data-dir", local.data_dir, timeout_s=300)
    if done.returncode != 0:
        raise FleetError(f"fleet wal dump failed ({done.returncode}): {done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
