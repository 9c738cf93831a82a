"""Operating fleet through its CLI against real processes: metrics, status, dead letters,
cancel, pause / resume, and the demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleet.localredis import free_port
from fleet.testing.cluster import finished

pytestmark = pytest.mark.integration



def _ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_move_with_the_jobs_and_agree_with_status(local):
    """Scraped counters count every enqueue, completion and dead job, as `status --json` does."""
    port = free_port()
    local.controller("--metrics-port", str(port))
    local.worker(2)
    for i in range(20):
        _ok(local.cli("enqueue", "tests.jobs:add", str(i), "1", "--id", f"m{i}", "-q"))
    _ok(local.cli("enqueue", "tests.e2e_jobs:always_fail", "--id", "md", "--retries", "1"))
    local.wait_for(finished(21), timeout_s=60)
    time.sleep(0.5)  # the gauges follow on the next heartbeat read
    samples = _scrape(port)
    status = json.loads(_ok(local.cli("status", "--json")).stdout)
    queue = (("queue", "default"),)
    assert samples[("fleet_jobs_enqueued_total", queue)] == 21
    assert samples[("fleet_jobs_completed_total", queue)] == status["totals"]["completed"] == 20
    assert samples[("fleet_jobs_dead_total", queue)] == status["states"]["dead"] == 1
    assert samples[("fleet_jobs_failed_total", queue)] == 2
    assert samples[("fleet_jobs", (("queue", "default"), ("state", "completed")))] == 20
    assert samples[("fleet_job_run_seconds_count", queue)] >= 20
    assert samples[("fleet_executors", ())] == 2
    assert samples[("fleet_wal_fsync_seconds_count", ())] > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200


def test_status_shows_states_queues_and_workers(local):
    """`fleet status` prints counts per queue and the workers; --json has the same counts."""
    local.controller()
    local.worker(2, "--queues", "high,default")
    _ok(local.cli("enqueue", "tests.jobs:add", "1", "2", "--id", "s1", "--queue", "high"))
    local.wait_for(finished(1), timeout_s=30)
    local.wait_for(lambda s: s["executors"] == 2, timeout_s=10)
    text = _ok(local.cli("status")).stdout
    assert "high" in text and "workers: 1, executors 2" in text
    data = json.loads(_ok(local.cli("status", "--json")).stdout)
    assert data["queues"]["high"]["completed"] == 1
    assert data["workers"][0]["executors"] == 2


def test_job_shows_every_attempt_and_the_result(local, tmp_path):
    """`fleet job` lists the failed first attempt and the successful retry, then the result."""
    local.controller()
    local.worker(1)
    marker = str(tmp_path / "marker")
    _ok(local.cli("enqueue", "fleet.demo:fail_once", marker, "--id", "j1"))
    local.wait_for(finished(1), timeout_s=30)
    text = _ok(local.cli("job", "j1")).stdout
    assert "state     completed" in text
    assert "#1 failed" in text and "#2 ok" in text
    assert 'result    "succeeded on a retry"' in text
    info = json.loads(_ok(local.cli("job", "j1", "--json")).stdout)
    assert [a["outcome"] for a in info["attempts"]] == ["failed", "ok"]
    missing = local.cli("job", "nope")
    assert missing.returncode == 7 and "no job 'nope'" in missing.stderr


def test_dead_letters_can_be_listed_retried_and_purged(local):
    """A dead job shows in `dead list`, runs again after `dead retry`, goes with `dead purge`."""
    local.controller()
    local.worker(1)
    _ok(local.cli("enqueue", "tests.e2e_jobs:always_fail", "--id", "dl", "--retries", "0"))
    local.wait_for(lambda s: s["states"]["dead"] == 1, timeout_s=30)
    listed = json.loads(_ok(local.cli("dead", "list", "--json")).stdout)
    assert listed[0]["id"] == "dl" and listed[0]["error"] == "ValueError: always fails"
    assert "retried 1" in _ok(local.cli("dead", "retry", "dl")).stdout
    local.wait_for(lambda s: s["totals"]["dead"] == 2, timeout_s=30)
    assert local.client().job("dl").info()["attempt"] == 2
    assert "retried 1" in _ok(local.cli("dead", "retry", "--all")).stdout
    local.wait_for(lambda s: s["totals"]["dead"] == 3, timeout_s=30)
    assert "purged 1" in _ok(local.cli("dead", "purge")).stdout
    assert local.cli("job", "dl").returncode == 7
    not_dead = local.cli("dead", "retry", "unknown-id")
    assert not_dead.returncode == 1 and "not dead: unknown-id" in not_dead.stderr


def test_pause_holds_a_queue_and_resume_releases_it(local):
    """Jobs of a paused queue stay pending; after resume they run."""
    local.controller()
    local.worker(1)
    _ok(local.cli("pause", "default"))
    _ok(local.cli("enqueue", "tests.jobs:add", "1", "2", "--id", "p1"))
    time.sleep(1.0)
    status = local.client().status()
    assert status["states"]["pending"] == 1 and status["paused"] == ["default"]
    _ok(local.cli("resume", "default"))
    local.wait_for(finished(1), timeout_s=30)


def test_cancel_stops_pending_and_running_jobs(local, tmp_path):
    """A pending job is cancelled at once; a running one is interrupted on its worker."""
    local.controller()
    local.worker(1)
    log_path = str(tmp_path / "exec.log")
    _ok(local.cli("enqueue", "tests.e2e_jobs:record", log_path, "long", "20000", "--id", "run"))
    local.wait_for(lambda s: s["busy"] == 1, timeout_s=30)
    _ok(local.cli("pause", "default"))
    _ok(local.cli("enqueue", "tests.jobs:add", "1", "2", "--id", "wait"))
    assert "cancelled 2" in _ok(local.cli("cancel", "run", "wait")).stdout
    local.wait_for(lambda s: s["busy"] == 0 and s["states"]["cancelled"] == 2, timeout_s=30)
    assert not os.path.exists(log_path), "the running job should have been stopped"
    again = local.cli("cancel", "run")
    assert again.returncode == 1 and "not cancellable" in again.stderr


def test_demo_runs_green_in_short_form(tmp_path):
    """`fleet demo` (shortened) kills the controller mid-run and ends with nothing lost."""
    done = subprocess.run([sys.executable, "-m", "fleet", "demo", "--jobs", "80", "--workers",
                           "8", "--workdir", str(tmp_path)], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "kill -9 controller" in done.stdout
    assert "recovered in" in done.stdout
    assert "OK: every job ended exactly once in the record; none lost" in done.stdout


def test_status_watch_refreshes_in_place(local):
    """`fleet status --watch S` redraws the table until interrupted (the screen is cleared
    on a terminal; click drops the escape codes on a pipe)."""
    local.controller()
    proc = subprocess.Popen([sys.executable, "-m", "fleet", "status", "--watch", "0.2"],
                            env=local.environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    proc.send_signal(2)  # Ctrl-C
    out, err = proc.communicate(timeout=10)
    assert out.count("namespace fleet") >= 2
    assert proc.returncode == 130 and "Traceback" not in err
