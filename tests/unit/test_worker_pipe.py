"""The executor → supervisor Pipe read in bulk, and the executor's wake-up when it goes idle."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading

import fakeredis
import orjson
import pytest

from fleet.config import Settings
from fleet.keys import Keys
from fleet.worker.executor import build_executor
from fleet.worker.handle import ExecutorHandle
from fleet.worker.wire import Identity
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60, method="thread")

IDENTITY = Identity("host-a:42:beef", "host-a")
KEYS = Keys("fleet")


class FakeProcess:
    pid = 4242
    exitcode = None

    def is_alive(self) -> bool:
        return True

    def close(self) -> None:
        pass


@pytest.fixture()
def pipe():
    receiver, sender = multiprocessing.Pipe(duplex=False)
    yield ExecutorHandle(0, FakeProcess(), receiver), sender
    sender.close()
    receiver.close()


def test_a_frame_cut_between_two_reads_is_read_whole(pipe):
    """Half a frame waits in the handle until the rest arrives; nothing is lost or misread."""
    handle, sender = pipe
    body = pickle.dumps(("s", "a", 1, 1000, 5.0, [], None))
    frame = len(body).to_bytes(4, "big") + body
    os.write(sender.fileno(), frame[:7])
    assert handle.read() == [] and handle.job is None
    os.write(sender.fileno(), frame[7:])
    sender.send(("f", "a", 1, True))
    assert handle.read() == [True]
    assert handle.job is None


def test_many_events_and_a_large_one_arrive_in_order(pipe):
    """Hundreds of events and one past the Pipe's buffer size are all taken, in order."""
    handle, sender = pipe
    held = [(f"held-{i:05d}", 1) for i in range(5_000)]  # ~100 KiB pickled: several reads
    writer = threading.Thread(target=lambda: [
        sender.send(("s", f"j{i}", 1, 1000, 5.0, held if i == 150 else [],
                     (f"j{i - 1}", 1, True) if i else None)) for i in range(300)])
    writer.start()
    finished: list[bool] = []

    def read_more() -> int:
        finished.extend(handle.read())
        return len(finished)
    # The last event carries the 299th finish: once it is read, the writer has sent all.
    wait_until(read_more, 30, until=lambda count: count >= 299, what="299 finishes read",
               poll_s=0.001)
    writer.join()
    assert finished == [True] * 299
    assert handle.job.job_id == "j299" and handle.held == []


def _record_idle_waits(executor) -> list[tuple]:
    """The command batches the executor sends that hold its idle BLPOP, as they are sent."""
    batches: list[tuple] = []
    send = executor.wire.send

    def recording(*commands):
        send(*commands)
        if any(command[0] == "BLPOP" for command in commands):
            batches.append(commands)
    executor.wire.send = recording
    return batches


def test_executor_going_idle_after_a_job_wakes_the_controller():
    """The round trip that starts an idle wait also pushes {ns}:wake, once per finished job."""
    server = fakeredis.FakeServer(version=(6, 2))
    client = fakeredis.FakeRedis(server=server)
    keys = Keys("fleet")
    message = {"id": "a", "n": 1, "f": "tests.jobs:add", "a": [1, 2]}
    client.rpush(keys.ready("default"), orjson.dumps(message))
    executor = build_executor(Settings(allow=("tests.jobs",)), IDENTITY, client)
    idle_waits = _record_idle_waits(executor)
    worker = threading.Thread(target=executor.run, kwargs={"max_jobs": 2})
    worker.start()
    wait_until(lambda: client.llen(keys.wake), 10, what="a wake", poll_s=0.01)
    assert client.llen(keys.acks) == 1 and client.llen(keys.wake) == 1
    # The first idle wait ends on its own after BLOCK_TIMEOUT_S; the second has no job
    # finished since, so it is sent without a wake.
    wait_until(lambda: len(idle_waits), 10, until=lambda count: count >= 2,
               what="a second idle wait", poll_s=0.01)
    assert [command[0] for command in idle_waits[0]] == ["RPUSH", "LLEN", "BLPOP"]
    assert [command[0] for command in idle_waits[1]] == ["LLEN", "BLPOP"]
    assert client.llen(keys.wake) == 1
    client.rpush(keys.ready("default"), orjson.dumps({**message, "id": "b"}))
    worker.join(10)
    assert not worker.is_alive()


def _record_writes(executor) -> list[list[str]]:
    """The names of the commands of every write the executor sends, in order."""
    writes: list[list[str]] = []
    send = executor.wire.send

    def recording(*commands):
        writes.append([command[0] for command in commands])
        send(*commands)
    executor.wire.send = recording
    return writes


def _idle_executor(prefetch: int, max_jobs: int):
    """An executor on an empty queue, running in a thread until it waits in BLPOP."""
    server = fakeredis.FakeServer(version=(6, 2))
    client = fakeredis.FakeRedis(server=server)
    executor = build_executor(Settings(allow=("tests.jobs",), prefetch=prefetch), IDENTITY,
                              client)
    writes = _record_writes(executor)
    worker = threading.Thread(target=executor.run, kwargs={"max_jobs": max_jobs}, daemon=True)
    worker.start()
    wait_until(lambda: any("BLPOP" in w for w in writes), 10, what="an idle wait",
               poll_s=0.01)
    return client, executor, writes, worker


def _message(job_id: str) -> bytes:
    return orjson.dumps({"id": job_id, "n": 1, "f": "tests.jobs:add", "a": [1, 2]})


def test_a_drained_executor_pushes_the_ack_and_wake_with_its_wait_in_one_write():
    """Once a pop found the queues empty, a job that arrives alone costs one write after it
    ran: its ack, the wake and the next BLPOP together, with no batch pop before them."""
    client, executor, writes, worker = _idle_executor(prefetch=4, max_jobs=2)
    assert writes[0][:4] == ["LMOVE"] * 4  # the first pop: a batch, and the queue was empty
    assert writes[1] == ["LLEN", "BLPOP"]
    client.rpush(KEYS.ready("default"), _message("a"))
    wait_until(lambda: len(writes), 10, until=lambda n: n >= 3, what="the write after a",
               poll_s=0.01)
    assert writes[2] == ["RPUSH", "RPUSH", "LLEN", "BLPOP"]  # ack, wake, length, wait
    assert client.llen(KEYS.acks) == 1 and client.llen(KEYS.wake) == 1
    client.rpush(KEYS.ready("default"), _message("b"))
    worker.join(10)
    assert not worker.is_alive() and executor.handled == 2
    assert not any("LMOVE" in write or "LPOP" in write for write in writes[1:])


def test_a_backlog_behind_the_waited_for_message_brings_batch_pops_back():
    """The LLEN written before the BLPOP shows more waiting behind the message it takes:
    the next pop is a batch again (into the taken list), not one message per round trip."""
    client, executor, writes, worker = _idle_executor(prefetch=4, max_jobs=6)
    client.rpush(KEYS.ready("default"), *(_message(f"j{i}") for i in range(6)))
    worker.join(10)
    assert not worker.is_alive() and executor.handled == 6
    pops = [w for w in writes if "BLPOP" in w or "LMOVE" in w]
    # Woken with one (LLEN read 0 before it blocked), then one with 5 seen behind it, then
    # a batch of the remaining four.
    assert ["BLPOP" in w for w in pops[1:4]] == [True, True, False]
    assert pops[3].count("LMOVE") == 4
    got = [orjson.loads(raw) for raw in client.lrange(KEYS.acks, 0, -1)]
    # (In a thread the job's soft timeout cannot set its signal: each is acked "fail".)
    assert [(ack["id"], ack["n"]) for ack in got] == [(f"j{i}", 1) for i in range(6)]
    assert client.llen(KEYS.ready("default")) == 0
