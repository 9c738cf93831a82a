"""--log-format json / FLEET_LOG_FORMAT for controller and worker, through real processes."""

from __future__ import annotations

import orjson
import pytest

from tests.waiting import wait_until

pytestmark = pytest.mark.integration

WAIT_S = 30


def _json_lines(path: str) -> list[dict]:
    with open(path, "rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]


def _wait_for_line(path: str, match, timeout_s: float = WAIT_S) -> dict:
    found = wait_until(lambda: [line for line in _json_lines(path) if match(line)], timeout_s,
                       what=f"a matching line in {path}")
    return found[0]


def test_json_logs_carry_job_id_attempt_queue_and_outcome(local):
    """Every line of a --log-format json controller and worker is JSON; the worker's line
    for a finished job names its id, attempt, queue and outcome, a failed one its error."""
    controller = local.controller("--log-format", "json")
    worker = local.worker(1, "--log-format", "json")
    client = local.client()
    ok = client.enqueue("tests.jobs:add", 1, 2)
    bad = client.enqueue("tests.e2e_jobs:always_fail", max_retries=0, queue="default")
    assert ok.result(timeout_s=WAIT_S) == 3
    line = _wait_for_line(worker.log_path, lambda line: line.get("job_id") == ok.id)
    assert line["attempt"] == 1 and line["queue"] == "default" and line["outcome"] == "ok"
    assert line["level"] == "INFO" and line["logger"] == "fleet.worker.jobs"
    failed = _wait_for_line(worker.log_path, lambda line: line.get("job_id") == bad.id)
    assert failed["outcome"] == "failed" and failed["error"] == "ValueError: always fails"
    assert {"ts", "level", "logger", "msg"} <= set(_json_lines(controller.log_path)[0])


def test_log_format_from_the_environment_and_a_bad_value_refused(local):
    """FLEET_LOG_FORMAT=json makes JSON lines; a bad value is a one-line error, exit 2."""
    controller = local.controller(env={"FLEET_LOG_FORMAT": "json"})
    assert _wait_for_line(controller.log_path, lambda line: line["logger"].startswith("fleet"))
    done = local.cli("worker", "--log-format", "xml", "--burst")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    local.env["FLEET_LOG_FORMAT"] = "xml"
    done = local.cli("worker", "--burst")
    assert done.returncode == 2 and "FLEET_LOG_FORMAT" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
