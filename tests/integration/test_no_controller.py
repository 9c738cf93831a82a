"""Talking to a namespace that no controller serves: the documented exit 6 and its message,
promptly, through the CLI and the API; and long waits that outlast the socket timeout."""

from __future__ import annotations

import time

import pytest
import redis

from fleet.client import Client
from fleet.errors import ControllerUnavailableError, NoReceiptError
from fleet.keys import Keys
from fleet.testing.cluster import LocalFleet

pytestmark = pytest.mark.integration

PROMPT_S = 8  # functional bound: the old behaviour took >= 10 s (the socket timeout)


@pytest.fixture()
def nobody(redis_url, tmp_path):
    """A LocalFleet on a private Redis with no controller running."""
    fleet_ = LocalFleet(redis_url, workdir=str(tmp_path), namespace="lonely")
    yield fleet_
    fleet_.stop_all()


def _timed_cli(fleet_: LocalFleet, *args: str):
    started = time.monotonic()
    done = fleet_.cli(*args, timeout_s=60)
    return done, time.monotonic() - started


def test_enqueue_without_controller_exits_6_promptly_saying_the_jobs_wait_on_intake(nobody):
    """`fleet enqueue` with no controller: exit 6 within seconds, the jobs stay on intake and
    re-sending is safe; the request is still there for a controller that starts later."""
    done, took_s = _timed_cli(nobody, "enqueue", "fleet.demo:noop", "--id", "early-1")
    assert done.returncode == 6, done.stderr
    line = done.stderr.strip()
    assert line.startswith("error: no controller is serving namespace 'lonely'")
    assert "may still be accepted, when a controller starts" in line
    assert "re-sending the same ids is safe" in line
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert took_s < PROMPT_S
    nobody.controller()
    assert nobody.client().job("early-1").status() in ("pending", "in_flight")


def test_status_without_controller_says_no_controller_within_seconds(nobody):
    """`fleet status` with no controller: exit 6, "no controller is serving namespace X"."""
    done, took_s = _timed_cli(nobody, "status")
    assert done.returncode == 6, done.stderr
    assert done.stderr.startswith("error: no controller is serving namespace 'lonely'")
    assert "Traceback" not in done.stderr
    assert took_s < PROMPT_S


def test_result_wait_without_controller_exits_6_promptly(nobody):
    """`fleet result --wait 30` with no controller fails fast with exit 6, not after 30 s."""
    done, took_s = _timed_cli(nobody, "result", "some-id", "--wait", "30")
    assert done.returncode == 6, done.stderr
    assert "no controller is serving namespace 'lonely'" in done.stderr
    assert took_s < PROMPT_S


def test_pause_without_controller_is_not_carried_out_later(nobody):
    """A control request refused for want of a controller is not left behind to run later."""
    done = nobody.cli("pause", "default")
    assert done.returncode == 6 and "nothing was sent" in done.stderr
    nobody.controller()
    assert nobody.client().status()["paused"] == []


def test_api_enqueue_without_controller_raises_no_receipt_promptly(nobody):
    """client.enqueue() with no controller raises NoReceiptError (exit 6) within seconds."""
    client = nobody.client()
    started = time.monotonic()
    with pytest.raises(NoReceiptError, match="no controller is serving namespace 'lonely'"):
        client.enqueue("fleet.demo:noop")
    assert time.monotonic() - started < PROMPT_S
    with pytest.raises(ControllerUnavailableError, match="no controller is serving"):
        client.status()


def test_receipt_wait_longer_than_the_socket_timeout_ends_in_no_receipt(redis_url):
    """A lease holder that never answers: the wait outlasts the socket timeout and ends in
    NoReceiptError with the documented message, not a Redis timeout."""
    short = redis.Redis.from_url(redis_url, socket_timeout=2)
    short.set(Keys("mute").controller, b'{"pid": 1}')  # a controller that never answers
    client = Client(namespace="mute", receipt_timeout_s=4, redis_client=short)
    with pytest.raises(NoReceiptError, match="no receipt from the controller within 4 s") as got:
        client.enqueue("fleet.demo:noop")
    assert "re-sending the same ids is safe" in str(got.value)
    with pytest.raises(ControllerUnavailableError, match="did not answer within 3 s"):
        client.request("status", timeout_s=3)


def test_a_lease_missing_for_a_moment_is_not_taken_for_no_controller(local, redis_url):
    """The lease key deleted (as a Redis that lost its data) right before each request: the
    controller claims it again within a step, and requests and enqueues still succeed."""
    local.controller()
    client = local.client()
    r = redis.Redis.from_url(redis_url)
    for i in range(10):
        r.delete(Keys("fleet").controller)
        assert client.status()["namespace"] == "fleet"
        r.delete(Keys("fleet").controller)
        assert client.enqueue("fleet.demo:noop", job_id=f"blink-{i}").id == f"blink-{i}"
