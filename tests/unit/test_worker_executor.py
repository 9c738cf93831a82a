"""The executor loop on fakeredis: pop in priority order, run, ack, hand back, survive Redis."""

from __future__ import annotations

import fakeredis
import orjson
import pytest

from fleet.config import Settings
from fleet.keys import Keys
from fleet.protocol.signing import ACK, DISPATCH, Seal
from fleet.worker.entry import build_executor
from fleet.worker.executor import AUTO_PREFETCH
from fleet.worker.wire import Identity

pytestmark = pytest.mark.timeout(60, method="thread")

KEYS = Keys("fleet")
IDENTITY = Identity("host-a:42:beef", "host-a")
_server: fakeredis.FakeServer | None = None


class Channel:
    """Stands in for the executor's Pipe to its supervisor."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def send(self, event: tuple) -> None:
        self.events.append(event)


def cut_redis() -> str:
    """A job that makes fakeredis fail every command from now on."""
    assert _server is not None
    _server.connected = False
    return "cut"


@pytest.fixture()
def server():
    global _server
    _server = fakeredis.FakeServer(version=(6, 2))
    yield _server
    _server = None


@pytest.fixture()
def client(server):
    return fakeredis.FakeRedis(server=server)


def push(client, queue: str, *messages: dict | bytes) -> None:
    for message in messages:
        raw = message if isinstance(message, bytes) else orjson.dumps(message)
        client.rpush(KEYS.ready(queue), raw)


def job(job_id: str, func: str = "tests.jobs:add", **fields) -> dict:
    return {"id": job_id, "n": 1, "f": func, "a": [1, 2], **fields}


def acks(client) -> list[dict]:
    return [orjson.loads(raw) for raw in client.lrange(KEYS.acks, 0, -1)]


def executor(client, channel=None, **settings):
    values = {"allow": ("tests.jobs", __name__), "queues": ("default",), **settings}
    return build_executor(Settings(**values), IDENTITY, client, channel)


def test_executor_runs_messages_and_pushes_one_ack_each(client):
    """Every popped message is run once and acked ok on {ns}:acks."""
    push(client, "default", *(job(f"j{i}") for i in range(5)))
    assert executor(client).run(max_jobs=5) == 5
    got = acks(client)
    assert [ack["id"] for ack in got] == [f"j{i}" for i in range(5)]
    assert all(ack["o"] == "ok" and ack["r"] == 3 and ack["w"] == IDENTITY.worker_id
               for ack in got)
    assert client.llen(KEYS.ready("default")) == 0


def test_executor_takes_queues_in_priority_order(client):
    """The first non-empty queue in the configured order wins, message by message."""
    push(client, "low", job("low-1"), job("low-2"))
    push(client, "high", job("high-1"), job("high-2"))
    executor(client, queues=("high", "low")).run(max_jobs=4)
    assert [ack["id"] for ack in acks(client)] == ["high-1", "high-2", "low-1", "low-2"]


def test_lower_priority_queue_is_left_alone_while_a_higher_one_has_work(client):
    """Popping from the high queue does not take messages from the low one."""
    push(client, "high", job("high-1"))
    push(client, "low", job("low-1"))
    executor(client, queues=("high", "low")).run(max_jobs=1)
    assert client.llen(KEYS.ready("low")) == 1


def test_failures_and_refusals_are_acked(client):
    """A raising job is acked fail; a disallowed module fail with fin true."""
    push(client, "default", job("boom", "tests.jobs:fail", a=["bad"]), job("os", "os:getcwd", a=[]))
    executor(client).run(max_jobs=2)
    boom, denied = acks(client)
    assert (boom["o"], boom["e"]) == ("fail", "ValueError: bad")
    assert denied["o"] == "fail" and denied["fin"] is True
    assert denied["e"].startswith("NotAllowed: module os is not in the worker's allow-list")


def test_malformed_messages_are_dropped_without_an_ack(client):
    """Not JSON, or no id / n: logged and dropped, the loop goes on."""
    push(client, "default", b"not json", orjson.dumps({"f": "tests.jobs:add"}), job("good"))
    executor(client).run(max_jobs=1)
    assert [ack["id"] for ack in acks(client)] == ["good"]


def test_unsealed_message_is_dropped_unacked_when_signing_is_on(client):
    """With signing_key set, an unsealed message is dropped without an ack (nobody dispatched
    it); a sealed one runs and its ack is sealed."""
    seal = Seal((b"k",), DISPATCH, "fleet")
    push(client, "default", job("unsigned"), seal.seal(orjson.dumps(job("sealed")), 1))
    runner = executor(client, signing_key="k")
    runner.run(max_jobs=1)
    raw = client.lrange(KEYS.acks, 0, -1)
    assert len(raw) == 1 and runner.runner.refused == 1
    assert orjson.loads(Seal((b"k",), ACK, "fleet").open(raw[0])[1])["id"] == "sealed"


def test_prefetched_messages_not_started_are_released_on_stop(client):
    """With prefetch 3, stopping after one job hands the other two back with rel."""
    push(client, "default", job("a"), job("b"), job("c"), job("d"))
    channel = Channel()
    executor(client, channel, prefetch=3).run(max_jobs=1)
    got = {ack["id"]: ack for ack in acks(client)}
    assert got["a"]["o"] == "ok"
    assert got["b"]["o"] == got["c"]["o"] == "rel"
    assert got["b"]["e"].startswith("WorkerShutdown: ")
    assert "d" not in got and client.llen(KEYS.ready("default")) == 1
    start = channel.events[0]
    assert start[:3] == ("s", "a", 1) and start[5] == [("b", 1), ("c", 1)]


def test_prefetched_batch_acks_each_job_before_the_next_starts(client):
    """With prefetch, a job's ack is in Redis while the next job of the batch runs."""
    push(client, "default", job("a"), job("b", f"{__name__}:count_acks", a=[]))
    executor(client, prefetch=2).run(max_jobs=2)
    got = acks(client)
    assert got[0]["id"] == "a" and got[1]["r"] == 1


def test_auto_prefetch_pops_a_batch_only_after_a_run_of_short_jobs(client):
    """prefetch 0 pops one message at a time until AUTO_PREFETCH jobs in a row were short,
    then a batch; one slow job sets it back to one at a time."""
    first = [job(f"j{i}") for i in range(AUTO_PREFETCH)]
    slow = job("slow", "tests.jobs:sleep_s", a=[0.02])
    push(client, "default", *first, slow, *(job(f"k{i}") for i in range(AUTO_PREFETCH + 1)))
    channel = Channel()
    executor(client, channel, prefetch=0).run(max_jobs=2 * AUTO_PREFETCH + 2)
    held = {event[1]: event[5] for event in channel.events if event[0] == "s"}
    assert all(held[f"j{i}"] == [] for i in range(AUTO_PREFETCH))
    assert [j for j, _ in held["slow"]] == [f"k{i}" for i in range(AUTO_PREFETCH - 1)]
    assert held[f"k{AUTO_PREFETCH - 1}"] == []  # after the slow job: one at a time again
    assert [ack["o"] for ack in acks(client)] == ["ok"] * (2 * AUTO_PREFETCH + 2)


def test_prefetched_messages_held_too_long_are_handed_back_unrun(client):
    """A message prefetched behind a job that outlasts the hold limit is acked rel, not
    started late in its lease, and the supervisor is told its held list is empty."""
    push(client, "default", job("slow", "tests.jobs:sleep_s", a=[0.05]), job("b"), job("c"),
         job("d"))
    channel = Channel()
    runner = executor(client, channel, prefetch=3)
    runner.hold_limit_s = 0.01
    runner.run(max_jobs=2)
    got = {ack["id"]: ack for ack in acks(client)}
    assert got["slow"]["o"] == got["d"]["o"] == "ok"
    assert got["b"]["o"] == got["c"]["o"] == "rel"
    assert got["b"]["e"].startswith("PrefetchHeld: ")
    assert ("r",) in channel.events


def test_acks_written_early_and_refused_are_kept_and_handed_over(client):
    """Acks of a prefetched batch whose RPUSH Redis refused (read at the next pop) are kept,
    and handed to the supervisor on exit: none is lost."""
    push(client, "default", job("a"), job("b"), job("c"))
    client.set(KEYS.acks, b"not a list")  # every RPUSH to it is refused (WRONGTYPE)
    channel = Channel()
    runner = executor(client, channel, prefetch=3)
    runner.health.failed = lambda exc: 0.0  # no backoff sleeps in the test
    runner.run(max_jobs=3)
    (handed,) = [event[1] for event in channel.events if event[0] == "x"]
    assert sorted(orjson.loads(ack)["id"] for ack in handed) == ["a", "b", "c"]
    assert runner.outbox.sent == []


def count_acks() -> int:
    """A job that reports how many acks Redis holds while it runs."""
    assert _server is not None
    return fakeredis.FakeRedis(server=_server).llen(KEYS.acks)


def test_executor_tells_its_supervisor_what_it_starts_and_finishes(client):
    """Start events carry id, attempt, start time, timeout; the finish rides on the next."""
    push(client, "default", job("a", to=7), job("b", "tests.jobs:fail"))
    channel = Channel()
    executor(client, channel).run(max_jobs=2)
    first, second, finish, exit_event = channel.events
    assert first[0:3] == ("s", "a", 1) and first[4] == 7.0 and first[6] is None
    assert second[0:3] == ("s", "b", 1) and second[6] == ("a", 1, True)
    assert finish[:4] == ("f", "b", 1, False)
    # Told once b's ack was written with the wait, before Redis answered: a copy rides along.
    assert orjson.loads(finish[4][1])["id"] == "b"
    assert exit_event == ("x", [])


def test_acks_that_cannot_be_pushed_are_handed_to_the_supervisor(client):
    """When Redis fails after a job, the executor keeps the ack and hands it over on exit."""
    push(client, "default", job("cut", f"{__name__}:cut_redis", a=[]))
    channel = Channel()
    executor(client, channel).run(max_jobs=1)
    kind, handed = channel.events[-1]
    assert kind == "x" and [orjson.loads(raw)["id"] for raw in handed] == ["cut"]


def test_executor_survives_redis_errors_and_goes_on(client, server, monkeypatch):
    """A Redis outage is waited out; the ack and the next job go through afterwards."""
    monkeypatch.setattr("fleet.worker.executor.time.sleep", lambda s: setattr(
        server, "connected", True))
    push(client, "default", job("first"), job("second"))
    server.connected = False
    executor(client).run(max_jobs=2)
    assert [ack["id"] for ack in acks(client)] == ["first", "second"]


def test_each_finished_job_is_logged_once_with_id_func_outcome_and_time(client, caplog):
    """One info line per job on fleet.worker.jobs; an id with a newline cannot forge a line."""
    push(client, "default", job("fine"), job("bad\nINFO forged", "tests.jobs:fail", a=[]))
    with caplog.at_level("INFO", logger="fleet.worker.jobs"):
        assert executor(client).run(max_jobs=2) == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "fleet.worker.jobs"]
    assert len(lines) == 2
    assert lines[0].startswith("[host-a:42:beef] job fine attempt 1 tests.jobs:add ok in ")
    assert "job 'bad\\nINFO forged' attempt 1 tests.jobs:fail failed in " in lines[1]
    assert lines[1].endswith(": ValueError: boom") and "\n" not in lines[1]


def test_executor_tells_its_supervisor_the_latest_progress_of_the_running_job(client):
    """A job that reports and then works silently has its latest report sent over the Pipe,
    naming its attempt, between its start and its finish."""
    push(client, "default", job("p", "tests.jobs:report_progress", a=[0.5, "copying", 0.6]))
    channel = Channel()
    executor(client, channel).run(max_jobs=1)
    kinds = [event[0] for event in channel.events]
    assert kinds[0] == "s" and "p" in kinds and kinds.index("p") < kinds.index("f")
    progress = channel.events[kinds.index("p")]
    assert progress[:5] == ("p", "p", 1, 0.5, "copying") and isinstance(progress[5], int)


def taken_now() -> list[str]:
    """A job that returns the ids its executor holds in its taken list as it runs."""
    assert _server is not None
    raw = fakeredis.FakeRedis(server=_server).lrange(KEYS.taken(IDENTITY.worker_id, 0), 0, -1)
    return [orjson.loads(message)["id"] for message in raw]


def test_a_prefetched_batch_waits_in_the_taken_list_until_each_job_starts(client):
    """The messages after a batch's first are in Redis while they wait, each one leaving the
    list before its job runs; the list expires in an hour, and a lone pop uses none."""
    push(client, "default", *(job(f"j{i}", f"{__name__}:taken_now", a=[]) for i in range(4)))
    assert executor(client, prefetch=4).run(max_jobs=4) == 4
    assert [ack["r"] for ack in acks(client)] == [["j1", "j2", "j3"], ["j2", "j3"], ["j3"], []]
    taken = KEYS.taken(IDENTITY.worker_id, 0)
    assert client.exists(taken) == 0
    push(client, "default", *(job(f"k{i}", f"{__name__}:taken_now", a=[]) for i in range(2)))
    client.delete(KEYS.acks)
    assert executor(client, prefetch=2).run(max_jobs=1) == 1
    assert acks(client)[0]["r"] == ["k1"]
    assert 3500 < client.ttl(taken) <= 3600
    push(client, "default", job("alone", f"{__name__}:taken_now", a=[]))
    client.delete(KEYS.acks, taken)
    assert executor(client, prefetch=1).run(max_jobs=1) == 1
    assert acks(client)[0]["r"] == [] and client.exists(taken) == 0


def test_messages_handed_back_leave_the_taken_list_at_the_next_pop(client):
    """Released unrun at a stop, the rest of a batch stays listed (their rel acks end those
    attempts) until the executor's next pop clears the list."""
    push(client, "default", *(job(f"h{i}") for i in range(4)))
    ex = executor(client, prefetch=4)
    taken = KEYS.taken(IDENTITY.worker_id, 0)
    assert ex.run(max_jobs=1) == 1
    assert sorted(a["id"] for a in acks(client) if a["o"] == "rel") == ["h1", "h2", "h3"]
    assert client.llen(taken) == 3
    push(client, "default", job("next"))
    assert ex.run(max_jobs=2) == 2  # counts from the first run
    assert client.exists(taken) == 0
