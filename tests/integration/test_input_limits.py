"""Input limits through real processes: big batches, oversized and deep messages never stop the
controller, at runtime or across a restart (issue 12, findings 1 and 2)."""

from __future__ import annotations

import glob
import json
import os
from collections import Counter

import orjson
import pytest
import redis

from fleet.errors import JobNotFoundError, JobSpecError
from fleet.job import JobSpec
from fleet.keys import Keys
from fleet.testing.cluster import finished
from fleet.wal.frame import HEADER, Scan, iter_frames
from tests.waiting import wait_until

from .helpers import terminal_counts, wal_events, write_job_file

pytestmark = pytest.mark.integration

KEYS = Keys("fleet")
ALLOW = {"FLEET_ALLOW": "tests.limits_jobs,tests.jobs"}


def frame_sizes(data_dir: str) -> list[int]:
    """The payload length of every frame in the log."""
    sizes = []
    for path in sorted(glob.glob(os.path.join(data_dir, "wal", "*.wal"))):
        with open(path, "rb") as handle:
            data = handle.read()
        for offset, _, _ in iter_frames(data, Scan(path), is_last=True):
            sizes.append(HEADER.unpack_from(data, offset)[1])
    return sizes


def test_acks_piled_up_while_the_controller_was_down_are_taken_in_batches_bounded_by_bytes(
        local):
    """600 jobs returning 40 KB, the controller SIGKILLed while 8 executors go on acking:
    the restarted controller takes the pile a budget at a time (batch_bytes lowered to
    256 KiB, as 64 MiB is to 400 KB results), every frame stays within it, every job ends
    exactly once."""
    local.env.update(ALLOW, FLEET_BATCH_BYTES=str(256 * 1024), FLEET_READY_WINDOW="300")
    controller = local.controller()
    local.worker(8)
    client = local.client()
    specs = [JobSpec(id=f"big-{n:04d}", func="tests.limits_jobs:blob",
                     kwargs={"size_bytes": 40_000}) for n in range(600)]
    assert all(r.status == "accepted" for r in client.enqueue_many(specs))
    wire = redis.Redis.from_url(local.redis_url)
    wait_until(lambda: wire.llen(KEYS.acks) > 0 or client.status()["states"]["completed"],
               60, what="first acks")
    controller.kill9()
    wait_until(lambda: wire.llen(KEYS.acks), 60, until=lambda n: n >= 100,
               what="100 acks piled up")
    piled = wire.llen(KEYS.acks)
    controller = local.controller()
    status = local.wait_for(finished(600), timeout_s=120)
    assert status["states"]["completed"] == 600
    assert controller.alive()
    assert piled * 40_000 > 8 * 256 * 1024
    assert max(frame_sizes(local.data_dir)) <= 256 * 1024 + 2 * 41_000
    counts = terminal_counts(wal_events(local.data_dir))
    assert len(counts) == 600 and set(counts.values()) == {1}


def test_enqueue_many_of_1000_jobs_with_70_kb_kwargs_is_accepted_in_bounded_frames(local):
    """One enqueue_many of 70 MB: cut into requests by the client, read a budget at a time by
    the controller, committed in frames under the limit; all accepted, and they replay."""
    local.env.update(ALLOW, FLEET_BATCH_BYTES=str(4 * 1024 * 1024))
    controller = local.controller()
    client = local.client(receipt_timeout_s=120)
    specs = [JobSpec(id=f"fat-{n:04d}", func="tests.limits_jobs:nothing",
                     kwargs={"blob": "y" * 70_000}) for n in range(1000)]
    receipts = client.enqueue_many(specs)
    assert [r.status for r in receipts] == ["accepted"] * 1000
    assert max(frame_sizes(local.data_dir)) <= 4 * 1024 * 1024 + 8 * 1024 * 1024
    controller.kill9()
    local.controller()
    states = client.status()["states"]
    assert states["pending"] + states["in_flight"] == 1000


def test_a_raw_request_over_the_message_limit_is_rejected_with_a_reason_and_trimmed(local):
    """An old client's 1,000-job request of 70 KB jobs, over max_message_bytes (lowered to
    4 MiB): a ``rejected`` receipt that says why, the request gone from intake, the
    controller alive and a normal job accepted after it, also across a restart."""
    local.env.update(ALLOW, FLEET_MAX_MESSAGE_BYTES=str(4 * 1024 * 1024))
    controller = local.controller()
    wire = redis.Redis.from_url(local.redis_url)
    jobs = [{"id": f"old-{n}", "f": "tests.limits_jobs:nothing", "k": {"b": "z" * 70_000}}
            for n in range(100)]
    wire.rpush(KEYS.intake, orjson.dumps({"req": "huge", "jobs": jobs}))
    wire.rpush(KEYS.wake, b"1")
    answer = wire.blpop([KEYS.receipt("huge")], timeout=30)
    assert answer is not None
    receipt = orjson.loads(answer[1])
    assert receipt["results"][0][1] == "rejected"
    assert f"at most {4 * 1024 * 1024} allowed" in receipt["error"]
    assert wire.llen(KEYS.intake) == 0
    client = local.client()
    assert client.status()["malformed"]["intake"] == 1
    assert client.enqueue_many([JobSpec(id="after", func="tests.jobs:add", args=[1, 2])]
                               )[0].status == "accepted"
    controller.kill9()
    local.controller()
    assert client.job("after").status() in ("pending", "in_flight")


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


def test_252_deep_kwargs_are_rejected_and_the_controller_lives_on_across_a_restart(local):
    """The raw intake request of the issue (``fleet.demo:simulate``, kwargs 252 deep) is
    answered ``rejected``; the controller keeps serving and restarts cleanly."""
    controller = local.controller()
    wire = redis.Redis.from_url(local.redis_url)
    wire.rpush(KEYS.intake, b'{"req": "deep", "jobs": [{"id": "deep", "f": '
               b'"fleet.demo:simulate", "k": {"v": ' + _deep(251) + b"}}]}")
    wire.rpush(KEYS.wake, b"1")
    answer = wire.blpop([KEYS.receipt("deep")], timeout=30)
    assert answer is not None
    (job_id, status, reason), = orjson.loads(answer[1])["results"]
    assert (job_id, status) == ("deep", "rejected") and "nested deeper than" in reason
    controller.kill9()
    controller = local.controller()
    client = local.client()
    assert client.enqueue_many([JobSpec(id="next", func="tests.jobs:add", args=[1, 2])]
                               )[0].status == "accepted"
    assert controller.alive()


def test_an_ack_whose_result_is_too_deep_fails_the_job_once_and_survives_a_restart(local):
    """A worker's ack with a 253-deep result is a poison message: counted, the attempt
    recorded as a final failure (the job ends dead, once), the controller alive after a
    restart."""
    controller = local.controller()
    client = local.client()
    client.enqueue_many([JobSpec(id="poison", func="tests.jobs:add", args=[1, 2],
                                 max_retries=2)])
    wire = redis.Redis.from_url(local.redis_url)
    wait_until(lambda: wire.llen(KEYS.ready("default")), 60, what="dispatch")
    message = orjson.loads(wire.lpop(KEYS.ready("default")))
    wire.rpush(KEYS.acks, b'{"id": "poison", "n": %d, "o": "ok", "r": ' % message["n"]
               + _deep(253) + b"}")
    wire.rpush(KEYS.wake, b"1")
    wait_until(client.job("poison").status, 60, until=lambda state: state == "dead",
               what="job dead")
    info = client.job("poison").info()
    assert info["error"].startswith("ResultRefused: the result is nested deeper than")
    assert client.status()["malformed"]["acks"] == 1
    controller.kill9()
    controller = local.controller()
    assert client.job("poison").status() == "dead"
    metrics = client.status()
    assert metrics["states"]["dead"] == 1
    assert controller.alive()


def test_fleet_enqueue_file_with_a_300_deep_payload_prints_one_line_and_exits_non_zero(
        local, tmp_path):
    """The CLI refuses the file before sending anything: one line on stderr, no traceback."""
    path = tmp_path / "deep.json"
    path.write_text(json.dumps([{"id": "deep", "payload": {"v": json.loads(
        _deep(300).decode())}}]))
    result = local.cli("enqueue", "--file", str(path))
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "nested deeper than" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_client_enqueue_many_with_a_300_deep_payload_raises_job_spec_error(local):
    """The Python API raises JobSpecError (not a raw TypeError) before sending."""
    client = local.client()
    deep = json.loads(_deep(300).decode())
    with pytest.raises(JobSpecError, match="deep"):
        client.enqueue_many([JobSpec(id="deep", func="fleet.demo:simulate",
                                     kwargs={"v": deep})])


# -- a big job file through the CLI, against a small per-step budget -----------------------

MIB = 1024 * 1024
NEAR_JOB_LIMIT = 512 * 1024 - 100  # kwargs just under the 512 KiB a job may carry


def _file_jobs(small: int, big: dict[int, int]) -> list[dict]:
    """``small`` jobs of 1 KB, with a job of ``big[index]`` bytes of kwargs at each index."""
    jobs = []
    for n in range(small):
        if n in big:
            jobs.append({"id": f"big-{n:04d}", "func": "tests.limits_jobs:nothing",
                         "kwargs": {"blob": "b" * big[n]}})
        jobs.append({"id": f"small-{n:04d}", "func": "tests.limits_jobs:nothing",
                     "kwargs": {"blob": "s" * 1000}})
    return jobs


def _enqueued_once(data_dir: str) -> Counter:
    return Counter(e["id"] for e in wal_events(data_dir) if e["t"] == "enq")


def test_fleet_enqueue_file_of_5_mb_against_a_1_mb_budget_accepts_every_job_once(
        local, tmp_path):
    """A 5.8 MB job file (2,500 jobs of 1 KB and six just under the 512 KiB job limit)
    against a controller reading 1 MiB a step with 1 MiB messages: exit 0, every job
    accepted once in the log, the controller up; sent again, every job is a duplicate."""
    budget = {"FLEET_BATCH_BYTES": str(MIB), "FLEET_MAX_MESSAGE_BYTES": str(MIB)}
    local.env.update({**ALLOW, **budget})
    controller = local.controller()
    jobs = _file_jobs(2500, dict.fromkeys((0, 1, 700, 1400, 2000, 2499), NEAR_JOB_LIMIT))
    path = write_job_file(str(tmp_path / "jobs.json"), jobs)
    assert os.path.getsize(path) > 5.5 * MIB
    result = local.cli("enqueue", "--file", path, "--quiet", timeout_s=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == f"{len(jobs)} accepted, 0 duplicate, 0 rejected"
    assert "Traceback" not in result.stderr
    status = local.client().status()
    assert status["states"]["pending"] + status["states"]["in_flight"] == len(jobs)
    counts = _enqueued_once(local.data_dir)
    assert len(counts) == len(jobs) and set(counts.values()) == {1}
    assert controller.alive()
    again = local.cli("enqueue", "--file", path, "--quiet", timeout_s=120)
    assert again.returncode == 0, again.stderr
    assert again.stderr.splitlines()[-1] == f"0 accepted, {len(jobs)} duplicate, 0 rejected"
    assert set(_enqueued_once(local.data_dir).values()) == {1}
    assert controller.alive()


def test_fleet_enqueue_file_with_one_job_over_the_message_limit_refuses_it_and_accepts_the_rest(
        local, tmp_path):
    """max_message_bytes lowered to 256 KiB, one job of 300 KB (under the job limit) among
    1,200: the CLI says in one line that the controller refused that job and why, exits 2,
    and every other job is accepted once; the controller stays up."""
    local.env.update(ALLOW, FLEET_BATCH_BYTES=str(MIB),
                     FLEET_MAX_MESSAGE_BYTES=str(256 * 1024))
    controller = local.controller()
    jobs = _file_jobs(1200, {600: 300_000})
    path = write_job_file(str(tmp_path / "jobs.json"), jobs)
    result = local.cli("enqueue", "--file", path, "--quiet", timeout_s=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    line = result.stderr.strip().splitlines()[-1]
    assert "refused 1 job(s)" in line and "big-0600" in line
    assert f"at most {256 * 1024} allowed" in line
    # The CLI stops at the refusal; the requests sent after it are accepted all the same.
    local.wait_for(lambda s: s["states"]["pending"] + s["states"]["in_flight"] == 1200)
    counts = _enqueued_once(local.data_dir)
    assert len(counts) == 1200 and set(counts.values()) == {1} and "big-0600" not in counts
    with pytest.raises(JobNotFoundError):
        local.client().job("big-0600").info()
    assert local.client().status()["malformed"]["intake"] == 1
    assert controller.alive()
