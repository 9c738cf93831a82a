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
    assert [command[0] for command in idle_waits[0]] == ["RPUSH", "BLPOP"]
    assert [command[0] for command in idle_waits[1]] == ["BLPOP"]
    assert client.llen(keys.wake) == 1
    client.rpush(keys.ready("default"), orjson.dumps({**message, "id": "b"}))
    worker.join(10)
    assert not worker.is_alive()
