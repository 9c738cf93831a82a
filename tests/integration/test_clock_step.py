"""A real step of the controller's wall clock (libfaketime; CI needs the apt package
``faketime``): leases and retention keep to the time that really passed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from fleet import build_spec
from fleet.testing.cluster import LocalFleet, finished

from .helpers import executions, record_jobs, wal_events

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
SITE = os.path.join(os.path.dirname(__file__), "faketime_site")


def _faked_controller(local: LocalFleet, offset_file: str, offset: str = "+0"):
    """A controller whose wall clock follows ``offset_file`` (re-read every second), set to
    ``offset`` first."""
    with open(offset_file, "w") as handle:
        handle.write(offset + "\n")
    env = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": offset_file,
           "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_CACHE_DURATION": "1",
           "PYTHONPATH": os.pathsep.join([SITE, os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    return local.controller(env=env)


def _step_clock(controller, offset_file: str, offset: str) -> None:
    """Step the controller's wall clock and wait until it has noticed (it logs the step)."""
    with open(offset_file, "w") as handle:
        handle.write(offset + "\n")
    deadline = time.monotonic() + 20
    while "the wall clock stepped" not in controller.tail(200):
        assert time.monotonic() < deadline, controller.tail()
        time.sleep(0.1)


def _jobs_specs(jobs: list[dict]) -> list:
    return [build_spec(j["func"], kwargs=j["kwargs"], job_id=j["id"]) for j in jobs]


@pytest.fixture()
def offset_file(tmp_path):
    if not os.path.exists(LIBFAKETIME):
        pytest.fail(f"{LIBFAKETIME} is missing: apt-get install faketime")
    return str(tmp_path / "faketime")


def test_clock_stepped_back_an_hour_does_not_hold_a_dead_workers_jobs(local, offset_file):
    """Wall clock stepped back 1 h, then the worker SIGKILLed mid-job: its jobs lapse one lease
    later (a failed attempt each) and complete on another worker, not an hour later."""
    log_path = os.path.join(local.workdir, "exec.log")
    jobs = record_jobs(4, log_path, sleep_ms=6000)
    controller = _faked_controller(local, offset_file)
    worker = local.worker(4)
    client = local.client()
    client.enqueue_many(_jobs_specs(jobs))
    local.wait_for(lambda s: s["busy"] >= 4, timeout_s=30)
    _step_clock(controller, offset_file, "-1h")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.popen.wait()
    local.worker(2)
    local.wait_for(finished(4), timeout_s=40)
    local.stop_all()
    events = wal_events(local.data_dir)
    assert {e["id"] for e in events if e["t"] == "exp"} == {j["id"] for j in jobs}
    assert {e["id"] for e in events if e["t"] == "ack"} == {j["id"] for j in jobs}


def test_clock_stepped_forward_61_min_keeps_finished_ids_for_dedupe(local, offset_file):
    """Wall clock stepped forward 61 min after 50 jobs completed (retention 1 h): re-sending the
    same 50 ids gives 50 `duplicate` and no job runs twice."""
    log_path = os.path.join(local.workdir, "exec.log")
    jobs = record_jobs(50, log_path)
    controller = _faked_controller(local, offset_file)
    local.worker(2)
    client = local.client()
    assert {r.status for r in client.enqueue_many(_jobs_specs(jobs))} == {"accepted"}
    local.wait_for(finished(50), timeout_s=60)
    _step_clock(controller, offset_file, "+61m")
    # Compaction runs once a second: let it run a few times across the step.
    uptime_s = client.status()["controller"]["uptime_s"]
    local.wait_for(lambda s: s["controller"]["uptime_s"] > uptime_s + 3, timeout_s=30)
    assert {r.status for r in client.enqueue_many(_jobs_specs(jobs))} == {"duplicate"}
    assert local.client().status()["states"]["completed"] == 50
    local.stop_all()
    assert executions(log_path) == dict.fromkeys((j["id"] for j in jobs), 1)


def test_controller_restarted_an_hour_behind_keeps_retries_recorded_before(local, offset_file,
                                                                           tmp_path):
    """Wall clock stepped back 1 h, three jobs failed once (a retry due 2-4 s later each), the
    controller SIGKILLed and restarted while the step lasts: the new run clock goes on from
    the log's latest time, so the retries run within their backoff, not an hour later."""
    local.env.update(FLEET_BACKOFF_BASE_S="4", FLEET_BACKOFF_MAX_S="4",
                     FLEET_ALLOW="fleet.testing.chaos")
    log_path, markers = str(tmp_path / "exec.log"), tmp_path / "markers"
    markers.mkdir()
    specs = [build_spec("fleet.testing.chaos.jobs:flaky", job_id=f"flaky-{i}",
                        kwargs={"log_path": log_path, "marker_dir": str(markers)})
             for i in range(3)]
    controller = _faked_controller(local, offset_file)
    _step_clock(controller, offset_file, "-1h")
    local.worker(2)
    local.client().enqueue_many(specs)
    local.wait_for(lambda s: s["totals"]["failed"] >= 3, timeout_s=30)
    controller.kill9()
    restarted = _faked_controller(local, offset_file, "-1h")
    local.wait_for(finished(3), timeout_s=30)
    assert "behind the log's latest record" in restarted.tail(200)
    local.stop_all()
    events = wal_events(local.data_dir)
    assert sorted(e["id"] for e in events if e["t"] == "fail") == [f"flaky-{i}" for i in range(3)]
    assert sorted(e["id"] for e in events if e["t"] == "ack") == [f"flaky-{i}" for i in range(3)]
