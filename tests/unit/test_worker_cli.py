"""`fleet worker` builds its Settings from flags, environment and file, then runs the worker."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from fleet.cli import app


@pytest.fixture()
def captured(monkeypatch):
    """Replaces run_worker: records the settings it was given and returns exit code 0."""
    seen = []

    def fake_run_worker(settings):
        seen.append(settings)
        return 0

    monkeypatch.setattr("fleet.worker.run_worker", fake_run_worker)
    for name in ("FLEET_ALLOW", "FLEET_QUEUES", "FLEET_WORKER_COUNT", "FLEET_REDIS_URL",
                 "FLEET_NAMESPACE", "FLEET_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return seen


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
