"""`fleet worker` builds its Settings from flags, environment and file, then runs the worker."""

from __future__ import annotations

import logging
import os

import pytest
from click.testing import CliRunner

from fleet.cli import app
from fleet.cli.worker import JOBS_LOGGER
from fleet.worker.executor import JOBS_LOGGER as EXECUTOR_JOBS_LOGGER


@pytest.fixture()
def captured(monkeypatch):
    """Replaces run_worker: records the settings it was given and returns exit code 0."""
    seen = []
    options = seen_options

    def fake_run_worker(settings, import_paths=(), burst=False, namespaces=()):
        seen.append(settings)
        options.update(import_paths=list(import_paths), burst=burst, namespaces=namespaces)
        return 0

    monkeypatch.setattr("fleet.worker.run_worker", fake_run_worker)
    for name in ("FLEET_ALLOW", "FLEET_QUEUES", "FLEET_WORKER_COUNT", "FLEET_REDIS_URL",
                 "FLEET_NAMESPACE", "FLEET_CONFIG", "FLEET_WORKER_PATH", "FLEET_NAMESPACES"):
        monkeypatch.delenv(name, raising=False)
    seen_options.clear()
    return seen


seen_options: dict = {}  # run_worker's other arguments, by name, in the last test's run


def test_worker_flags_become_settings(captured):
    """--count, --queues, --allow (repeated and comma-separated), --redis-url, --namespace."""
    result = CliRunner().invoke(app, [
        "worker", "--count", "3", "--queues", "high,default", "--allow", "a.b,c",
        "--allow", "d", "--redis-url", "redis://127.0.0.1:1/0", "--namespace", "ns1"])
    assert result.exit_code == 0, result.output
    (settings,) = captured
    assert settings.executors == 3
    assert settings.queues == ("high", "default")
    assert settings.allow == ("a.b", "c", "d")
    assert (settings.redis_url, settings.namespace) == ("redis://127.0.0.1:1/0", "ns1")


def test_worker_reads_allow_and_count_from_the_environment(captured):
    """FLEET_ALLOW and FLEET_WORKER_COUNT apply when no flag is given."""
    result = CliRunner().invoke(app, ["worker"], env={"FLEET_ALLOW": "x.y,z",
                                                      "FLEET_WORKER_COUNT": "5"})
    assert result.exit_code == 0, result.output
    assert captured[0].allow == ("x.y", "z") and captured[0].executors == 5


def test_worker_refuses_a_bad_count(captured):
    """A negative count is a configuration error, and the worker is not started."""
    result = CliRunner().invoke(app, ["worker", "--count", "-1"])
    assert result.exit_code != 0 and not captured


def test_worker_puts_path_dirs_then_the_current_directory_on_the_import_path(captured,
                                                                               tmp_path):
    """--path DIR (repeatable) comes first, then the directory the worker was started in."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    result = CliRunner().invoke(app, ["worker", "--path", str(first), "--path", str(second)])
    assert result.exit_code == 0, result.output
    assert seen_options["import_paths"] == [str(first), str(second), os.getcwd()]


def test_worker_reads_its_path_from_fleet_worker_path(captured, tmp_path):
    """FLEET_WORKER_PATH holds directories separated by os.pathsep."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    result = CliRunner().invoke(app, ["worker"],
                                env={"FLEET_WORKER_PATH": f"{first}{os.pathsep}{second}"})
    assert result.exit_code == 0, result.output
    assert seen_options["import_paths"][:2] == [str(first), str(second)]


def test_worker_refuses_a_path_that_is_not_a_directory(captured, tmp_path):
    """--path to nothing: a one-line error naming it, exit 2, no worker started."""
    result = CliRunner().invoke(app, ["worker", "--path", str(tmp_path / "nope")])
    assert result.exit_code == 2 and not captured
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_worker_burst_quiet_and_log_level_flags(captured):
    """--burst reaches run_worker; --quiet silences the per-job logger; --log-level applies."""
    root = logging.getLogger()
    previous = root.level
    try:
        result = CliRunner().invoke(app, ["worker", "--burst", "--quiet", "--log-level",
                                          "debug"])
        assert result.exit_code == 0, result.output
        assert seen_options["burst"] is True
        assert JOBS_LOGGER == EXECUTOR_JOBS_LOGGER
        assert logging.getLogger(JOBS_LOGGER).level == logging.WARNING
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(previous)
        logging.getLogger(JOBS_LOGGER).setLevel(logging.NOTSET)


def test_worker_namespaces_reach_run_worker(captured):
    """--namespaces s0,s1 is parsed and handed to run_worker; none given: an empty tuple."""
    assert CliRunner().invoke(app, ["worker", "--namespaces", "s0,s1"]).exit_code == 0
    assert seen_options["namespaces"] == ("s0", "s1")
    assert CliRunner().invoke(app, ["worker"]).exit_code == 0
    assert seen_options["namespaces"] == ()
