"""Workflows through real processes: a DAG under SIGKILLs, chains, groups, ``--after``."""

from __future__ import annotations

import json
import os
import signal
from collections import defaultdict

import pytest

from fleet import build_spec
from fleet.testing.cluster import LocalFleet, finished

from .helpers import terminal_counts, wal_events

pytestmark = pytest.mark.integration

STEP = "tests.e2e_jobs:step"


def _dag(log_path: str) -> tuple[list, dict[str, list[str]]]:
    """Three levels with fan-out and fan-in, two more below the fan-in, and the children of
    a job that always fails (cancelled, and with allow_failure run)."""
    parents: dict[str, list[str]] = {}

    def spec(job_id, after=(), allow_failure=False, func=STEP, args=None, retries=None):
        parents[job_id] = list(after)
        return build_spec(func, args if args is not None else [log_path, job_id, 500],
                          job_id=job_id, depends_on=list(after), allow_failure=allow_failure,
                          max_retries=retries)

    specs = [spec("root")]
    fan = [f"fan-{n}" for n in range(12)]
    specs += [spec(job_id, ["root"]) for job_id in fan]
    specs.append(spec("callback", fan))
    specs += [spec(f"after-{n}", ["callback"]) for n in range(2)]
    specs.append(spec("doomed", func="tests.e2e_jobs:always_fail", args=[], retries=0))
    specs.append(spec("orphan", ["doomed"]))
    specs.append(spec("grand-orphan", ["orphan"]))
    specs.append(spec("tolerant", ["doomed", "root"], allow_failure=True))
    return specs, parents


def _times(log_path: str) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    starts, ends = defaultdict(list), defaultdict(list)
    with open(log_path) as handle:
        for line in handle:
            kind, tag, ns = line.split()
            (starts if kind == "start" else ends)[tag].append(int(ns))
    return starts, ends


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(p) for p in handle.read().split()]


def test_a_dag_under_controller_and_executor_kills_runs_every_job_after_its_parents(local):
    """Controller SIGKILLed twice and an executor once: no job starts before its parents
    ended, the fan-in callback completes exactly once, a failing job's dependents are
    cancelled (and run with allow_failure)."""
    log_path = os.path.join(local.workdir, "exec.log")
    specs, parents = _dag(log_path)
    controller = local.controller()
    worker = local.worker(2)
    local.worker(2)
    receipts = local.client().enqueue_many(specs)
    assert all(r.durable for r in receipts), [r.reason for r in receipts if not r.durable]
    local.wait_for(lambda s: s["states"]["completed"] >= 2, timeout_s=60)
    controller.kill9()
    controller = local.controller()
    local.wait_for(lambda s: s["busy"] >= 1, timeout_s=60)
    executors = _children(worker.pid)
    if executors:
        os.kill(executors[0], signal.SIGKILL)
    local.wait_for(lambda s: s["states"]["completed"] >= 8, timeout_s=60)
    controller.kill9()
    local.controller()
    local.wait_for(finished(len(specs)), timeout_s=180)
    client = local.client()
    states = {spec.id: client.job(spec.id).info()["state"] for spec in specs}
    local.stop_all()
    assert states["orphan"] == states["grand-orphan"] == "cancelled"
    assert states["tolerant"] == states["callback"] == "completed"
    assert client_free_states_ok(states)
    starts, ends = _times(log_path)
    assert "orphan" not in starts and "grand-orphan" not in starts
    for job_id, mine in parents.items():
        for parent in mine:
            if parent != "doomed" and job_id in starts:
                assert min(starts[job_id]) >= min(ends[parent]), (job_id, parent)
    terminal = terminal_counts(wal_events(local.data_dir))
    assert terminal["callback"] == 1 and terminal["after-0"] == terminal["after-1"] == 1


def client_free_states_ok(states: dict[str, str]) -> bool:
    """Every job but the failing one and its strict dependents completed."""
    failed = {"doomed": "dead", "orphan": "cancelled", "grand-orphan": "cancelled"}
    return all(state == failed.get(job_id, "completed") for job_id, state in states.items())


def test_chain_group_and_cli_after_pass_results_end_to_end(local: LocalFleet):
    """A chain sums along its links, a group's callback sees every member's result, and
    ``fleet enqueue --after`` waits for its parent and receives its result."""
    local.controller()
    local.worker(2)
    client = local.client()
    chain = client.chain([build_spec("tests.e2e_jobs:accumulate", [n]) for n in (1, 2, 3)])
    assert chain[-1].result(timeout_s=60) == 6
    members = [build_spec("tests.e2e_jobs:accumulate", [n]) for n in (10, 20)]
    group = client.group(members, then=build_spec("tests.e2e_jobs:parent_results"))
    assert group.wait(timeout_s=60) == {members[0].id: 10, members[1].id: 20}
    assert [job.id for job in group.jobs] == [m.id for m in members]
    done = local.cli("enqueue", "tests.e2e_jobs:accumulate", "5", "--id", "p1")
    assert done.returncode == 0, done.stderr
    done = local.cli("enqueue", "tests.e2e_jobs:accumulate", "1", "--id", "c1", "--after", "p1",
                     "--pass-results")
    assert done.returncode == 0, done.stderr
    assert client.job("c1").result(timeout_s=60) == 6
    info = json.loads(local.cli("job", "c1", "--json").stdout)
    assert info["parents"] == [{"id": "p1", "state": "completed"}]
    assert json.loads(local.cli("job", "p1", "--json").stdout)["children"] == [
        {"id": "c1", "state": "completed"}]
    refused = local.cli("enqueue", "tests.e2e_jobs:accumulate", "1", "--after", "nobody")
    assert refused.returncode != 0
    assert "unknown parent 'nobody'" in refused.stdout and "Traceback" not in refused.stderr
