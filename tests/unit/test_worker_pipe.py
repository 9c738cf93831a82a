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
from fleet.worker.entry import build_executor
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
    body = pickle.dumps(("s", "a", 1, 1000, 5.0, [], None, (True, None)))
    frame = len(body).to_bytes(4, "big") + body
    os.write(sender.fileno(), frame[:7])
    assert handle.read() == [] and handle.job is None
    os.write(sender.fileno(), frame[7:])
    sender.send(("f", "a", 1, True, (True, None)))
    assert handle.read() == [True]
    assert handle.job is None


def test_many_events_and_a_large_one_arrive_in_order(pipe):
    """Hundreds of events and one past the Pipe's buffer size are all taken, in order."""
    handle, sender = pipe
    held = [(f"held-{i:05d}", 1) for i in range(5_000)]  # ~100 KiB pickled: several reads
    writer = threading.Thread(target=lambda: [
        sender.send(("s", f"j{i}", 1, 1000, 5.0, held if i == 150 else [],
                     (f"j{i - 1}", 1, True) if i else None, (True, None))) for i in range(300)])
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


def _idle_executor(prefetch: int, max_jobs: int, rewrite=None):
    """An executor on an empty queue, running in a thread until it waits in BLPOP; with
    ``rewrite``, each command is passed through it on its way to Redis (and to the record)."""
    server = fakeredis.FakeServer(version=(6, 2))
    client = fakeredis.FakeRedis(server=server)
    executor = build_executor(Settings(allow=("tests.jobs",), prefetch=prefetch), IDENTITY,
                              client)
    writes = _record_writes(executor)
    if rewrite is not None:
        send = executor.wire.send
        executor.wire.send = lambda *commands: send(*map(rewrite, commands))
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


class _Witness:
    """A supervisor's end of the Pipe that notes, for each event, the acks Redis holds."""

    def __init__(self, client) -> None:
        self.client, self.seen = client, []

    def send(self, event) -> None:
        acked = [orjson.loads(raw)["id"] for raw in self.client.lrange(KEYS.acks, 0, -1)]
        self.seen.append((event, acked))


def _witnessed_executor(prefetch: int, messages: list[bytes]):
    server = fakeredis.FakeServer(version=(6, 2))
    client = fakeredis.FakeRedis(server=server)
    if messages:
        client.rpush(KEYS.ready("default"), *messages)
    witness = _Witness(client)
    executor = build_executor(Settings(allow=("tests.jobs",), prefetch=prefetch), IDENTITY,
                              client, channel=witness)
    return client, executor, witness


def test_a_drained_executor_tells_a_job_finished_only_once_its_ack_is_written():
    """Killed between the two, the supervisor (which stops owing the ack when told) would
    lose it: the job's lease would run out and the finished job would run again."""
    client, executor, witness = _witnessed_executor(1, [])
    worker = threading.Thread(target=executor.run, kwargs={"max_jobs": 2}, daemon=True)
    worker.start()
    wait_until(lambda: executor.drained, 10, what="a drained executor", poll_s=0.01)
    client.rpush(KEYS.ready("default"), _message("a"))
    wait_until(lambda: [e for e, _ in witness.seen if e[0] == "f"], 10, what="a's finish",
               poll_s=0.01)
    client.rpush(KEYS.ready("default"), _message("b"))
    worker.join(10)
    assert not worker.is_alive()
    finished = [(event, acked) for event, acked in witness.seen if event[0] == "f"]
    assert finished[0][0][1] == "a" and "a" in finished[0][1]


def test_a_prefetched_job_starts_only_once_the_ack_of_the_one_before_is_written():
    """The start event carries the finished job before it (``done``): that ack is already
    in Redis when the supervisor hears of it."""
    messages = [_message(f"p{i}") for i in range(4)]
    client, executor, witness = _witnessed_executor(4, messages)
    executor.run(max_jobs=4)
    starts = [(event, acked) for event, acked in witness.seen if event[0] == "s"]
    assert [event[1] for event, _ in starts] == ["p0", "p1", "p2", "p3"]
    for event, acked in starts[1:]:
        done_id = event[6][0]
        assert done_id in acked, (event[1], done_id, acked)


def test_a_refused_llen_ends_the_drained_mode_with_one_warning(caplog):
    """An older worker ACL without ``llen``: the waits go without the lengths after the
    first refusal (no NOPERM per wait), and the jobs still run."""
    client, executor, writes, worker = _refusing_llen_executor(max_jobs=3)
    for job_id in ("a", "b", "c"):
        client.rpush(KEYS.ready("default"), _message(job_id))
        wait_until(lambda j=job_id: [orjson.loads(r)["id"] for r in
                                     client.lrange(KEYS.acks, 0, -1)],
                   10, until=lambda ids, j=job_id: j in ids, what=f"{job_id}'s ack",
                   poll_s=0.01)
    worker.join(10)
    assert not worker.is_alive() and executor.handled == 3
    waits = [w for w in writes if "BLPOP" in w]
    assert "LLEN" in waits[0] and not any("LLEN" in w for w in waits[1:])
    assert executor.no_lengths and not executor.drained
    warnings = [r for r in caplog.records if "refused LLEN" in r.getMessage()]
    assert len(warnings) == 1


def _refusing_llen_executor(max_jobs: int):
    """``_idle_executor`` on a Redis that refuses every LLEN (sent with a bad argument)."""
    return _idle_executor(1, max_jobs, rewrite=lambda command: (
        ("LLEN", command[1], "no-such-arg") if command[0] == "LLEN" else command))


def test_an_llen_reply_of_the_wrong_type_counts_nothing_and_breaks_nothing():
    """A reply where a length should be (here the text ECHO returns) is no backlog: the
    executor stays drained, keeps waiting with the lengths and runs every job."""
    client, executor, writes, worker = _idle_executor(1, 3, rewrite=lambda command: (
        ("ECHO", "not-a-length") if command[0] == "LLEN" else command))
    for count, job_id in enumerate(("a", "b", "c"), start=1):
        client.rpush(KEYS.ready("default"), _message(job_id))
        wait_until(lambda: executor.handled, 10, until=lambda n, c=count: n >= c,
                   what=f"{job_id} handled", poll_s=0.01)
    worker.join(10)
    assert not worker.is_alive() and executor.handled == 3
    assert executor.drained and not executor.no_lengths
    assert all("ECHO" in w for w in writes if "BLPOP" in w)


def test_each_finished_jobs_ack_is_copied_to_the_supervisor_once():
    """A batch's start events each carry one ack, the job before's (not every ack still
    unconfirmed), and only the first of the batch lets the older copies go; a supervisor
    following them holds at most a batch's acks and the one finished after it."""
    messages = [_message(f"p{i}") for i in range(8)]
    client, executor, witness = _witnessed_executor(4, messages)
    executor.run(max_jobs=8)
    starts = [event for event, _ in witness.seen if event[0] == "s"]
    assert [event[1] for event in starts] == [f"p{i}" for i in range(8)]
    for event in starts[1:]:
        reset, ack = event[7]
        assert orjson.loads(ack)["id"] == event[6][0]  # the ack of the job told done
    # A batch's pop confirmed every ack before it: its first start lets the copies go.
    assert [event[7][0] for event in starts] == [True, False, False, False] * 2
    handle = ExecutorHandle(0, FakeProcess(), None)
    most = 0
    for event, _ in witness.seen:
        handle._apply(event, [], 0.0)
        most = max(most, len(handle.ack_copies))
    assert most == 4 + 1
