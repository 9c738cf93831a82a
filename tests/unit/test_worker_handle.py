"""The supervisor's view of an executor: events from the Pipe, and the acks owed when it ends."""

from __future__ import annotations

import multiprocessing

import pytest

from fleet.worker.handle import ExecutorHandle
from fleet.worker.heartbeat import heartbeat_payload
from fleet.worker.wire import Identity

IDENTITY = Identity("host-a:42:beef", "host-a")


class FakeProcess:
    pid = 4242
    exitcode: int | None = -9
    sentinel = -1

    def is_alive(self) -> bool:
        return self.exitcode is None

    def close(self) -> None:
        pass


@pytest.fixture()
def handle(monkeypatch):
    receiver, sender = multiprocessing.Pipe(duplex=False)
    made = ExecutorHandle(0, FakeProcess(), receiver)
    made.sender = sender
    monkeypatch.setattr(made, "_signal", lambda signum: None)
    yield made
    sender.close()
    receiver.close()


def start(handle, job_id="j1", held=(), done=None, timeout_s=5.0):
    handle.sender.send(("s", job_id, 1, 1000, timeout_s, list(held), done, (True, None)))


def test_start_and_finish_events_track_the_running_job(handle):
    """"s" sets the running job; the finish riding on the next "s" or an "f" clears it."""
    start(handle, "a")
    assert handle.read() == [] and handle.job.job_id == "a"
    start(handle, "b", done=("a", 1, True))
    handle.sender.send(("f", "b", 1, False, (True, None)))
    assert handle.read() == [True, False]
    assert handle.job is None


def test_unexpected_death_acks_the_running_job_executor_died(handle):
    """A process gone without being killed by the supervisor: fail ExecutorDied."""
    start(handle, "a")
    handle.read()
    (ack,) = handle.exit_acks(IDENTITY)
    assert (ack["id"], ack["n"], ack["o"]) == ("a", 1, "fail")
    assert ack["e"] == ("ExecutorDied: executor pid 4242 was killed by SIGKILL while running "
                        "the job")
    assert ack["st"] == 1000 and ack["w"] == IDENTITY.worker_id


def test_timeout_kill_acks_fail_with_job_timeout_exception(handle):
    """A hard-killed job is acked fail JobTimeoutException ... killed after N s."""
    start(handle, "a", timeout_s=0.5)
    handle.read()
    assert handle.overdue(handle.job.started_mono + 3, grace_s=2.0)
    assert not handle.overdue(handle.job.started_mono + 2, grace_s=2.0)
    handle.kill("timeout")
    (ack,) = handle.exit_acks(IDENTITY)
    assert ack["o"] == "fail"
    assert ack["e"].startswith("JobTimeoutException: job ran past its timeout of 0.5 s; "
                               "executor pid 4242 killed after ")


def test_kill_decides_on_the_job_running_at_that_moment(handle):
    """A finish read after the kill does not erase the ack owed for the killed job."""
    start(handle, "a")
    handle.read()
    handle.kill("cancel")
    handle.sender.send(("f", "a", 1, True, (True, None)))
    handle.read()
    (ack,) = handle.exit_acks(IDENTITY)
    assert (ack["id"], ack["o"]) == ("a", "cancelled")


@pytest.mark.parametrize("reason, text", [("drain", "shutdown grace"), ("cold", "cold stop")])
def test_shutdown_kills_hand_the_job_and_prefetched_messages_back(handle, reason, text):
    """Killed by a shutdown: the running job and every prefetched message are acked rel."""
    start(handle, "a", held=[("b", 1), ("c", 2)])
    handle.read()
    handle.kill(reason)
    acks = handle.exit_acks(IDENTITY)
    assert [(ack["id"], ack["n"], ack["o"]) for ack in acks] == [
        ("a", 1, "rel"), ("b", 1, "rel"), ("c", 2, "rel")]
    assert text in acks[0]["e"]


def test_prefetched_messages_the_executor_handed_back_are_not_owed(handle):
    """After ("r",) the executor has released its prefetched messages: a kill owes only the
    running job's ack."""
    start(handle, "a", held=[("b", 1)])
    handle.sender.send(("r",))
    handle.read()
    handle.kill("drain")
    assert [ack["id"] for ack in handle.exit_acks(IDENTITY)] == ["a"]


def test_clean_exit_hands_over_acks_and_owes_nothing(handle):
    """"x" carries the executor's unpushed acks; after it nothing more is owed."""
    start(handle, "a", held=[("b", 1)])
    handle.sender.send(("x", [b'{"id":"a"}']))
    handle.read()
    assert handle.handed_acks == [b'{"id":"a"}']
    assert handle.exit_acks(IDENTITY) == []


def test_the_supervisor_keeps_each_finished_jobs_ack_until_all_are_confirmed(handle):
    """"f" and "s" carry the finished job's ack (each copied once) and whether every ack
    told before is confirmed in Redis; "x" leaves no copy."""
    handle.sender.send(("f", "a", 1, True, (True, b"ack-a")))
    handle.read()
    assert handle.job is None and handle.ack_copies == [b"ack-a"]
    handle.sender.send(("s", "c", 1, 1000, 5.0, [], None, (False, None)))  # a not confirmed
    handle.sender.send(("s", "d", 1, 1000, 5.0, [], ("c", 1, True), (False, b"ack-c")))
    handle.read()
    assert handle.ack_copies == [b"ack-a", b"ack-c"] and handle.job.job_id == "d"
    handle.sender.send(("s", "e", 1, 1000, 5.0, [], ("d", 1, True), (True, b"ack-d")))
    handle.read()
    assert handle.ack_copies == [b"ack-d"]  # a and c confirmed: their copies went
    handle.sender.send(("x", [b"ack-d", b"ack-e"]))
    handle.read()
    assert handle.ack_copies == [] and handle.handed_acks == [b"ack-d", b"ack-e"]


def test_heartbeat_payload_has_the_protocol_fields(handle):
    """The heartbeat lists running jobs as [id, attempt, started_ms] and counts them."""
    start(handle, "a")
    handle.read()
    beat = heartbeat_payload(IDENTITY, 42, 5, ("high", "default"), 3, [handle.job], 7, 1)
    assert beat["jobs"] == [["a", 1, 1000]] and beat["busy"] == 1
    assert (beat["id"], beat["host"], beat["pid"], beat["executors"]) == (
        IDENTITY.worker_id, "host-a", 42, 3)
    assert (beat["queues"], beat["done"], beat["failed"]) == (["high", "default"], 7, 1)
    assert beat["started_ms"] == 5 and beat["ts"] > 5
