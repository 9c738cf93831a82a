"""Bad input, one row per case: each gets a clear one-line refusal or a logged, counted drop.

Every row runs against one real fleet (a private redis-server, ``fleet controller`` and a
one-executor ``fleet worker``) shared by the module. After each row the controller must still
answer, and the canary jobs accepted before the first row must all complete at the end:
whatever the bad input was, nothing accepted is lost.

Row kinds: ``Cli`` (a ``fleet`` command: exit code and a one-line error, no traceback),
``Api`` (the Python client: the exception and its message), ``Raw`` (bytes pushed straight into
a Redis list the controller reads: a counter goes up, the drop is logged or answered) and
``Start`` (a ``fleet controller`` that must refuse to start: exit code and one line).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import redis

from fleet.client import Client
from fleet.controller.journal import Journal
from fleet.errors import JobSpecError
from fleet.job import MAX_PAYLOAD_BYTES
from fleet.keys import Keys
from fleet.localredis import RedisServer, free_port
from fleet.state import events as ev
from fleet.testing.cluster import FLEET, LocalFleet
from fleet.wal import open_log, write_snapshot
from fleet.wal.segments import list_segments, segment_name, wal_dir
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

KEYS = Keys("fleet")
CANARIES = 20
ENV = {"FLEET_HEARTBEAT_S": "0.2", "FLEET_LEASE_S": "5", "FLEET_ALLOW": "tests.jobs",
       "FLEET_RECEIPT_TIMEOUT_S": "10"}


@dataclass
class Bench:
    """The module's fleet, plus a scratch directory for files the rows write."""

    local: LocalFleet
    controller: Any
    redis: redis.Redis
    scratch: str
    ran: set[str] = field(default_factory=set)  # the rows sent so far, in whatever order

    def path(self, name: str, content: str | bytes) -> str:
        path = os.path.join(self.scratch, name)
        with open(path, "wb") as handle:
            handle.write(content.encode() if isinstance(content, str) else content)
        return path

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*FLEET, *args], env=self.local.environment(env),
                              capture_output=True, text=True, timeout=60)

    def status(self) -> dict[str, Any]:
        return self.local.client().status()


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A running fleet with canary jobs accepted before any bad input arrives."""
    server = RedisServer().start()
    workdir = tmp_path_factory.mktemp("bad-input")
    os.makedirs(workdir / "fleet")
    local = LocalFleet(server.url, workdir=str(workdir / "fleet"), env=ENV)
    try:
        controller = local.controller()
        local.worker(1)
        client = local.client()
        for i in range(CANARIES):
            client.enqueue("tests.jobs:add", i, 1, job_id=f"canary-{i}")
        yield Bench(local, controller, redis.Redis.from_url(server.url), str(workdir))
    finally:
        local.stop_all()
        server.stop()


# -- row kinds -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Cli:
    """Run ``fleet ARGS``: expect ``code`` and one stderr line containing ``message``."""

    args: tuple[str, ...]
    code: int
    message: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def check(self, bench: Bench) -> None:
        paths = {name: bench.path(name, content) for name, content in self.files.items()}
        args = [paths.get(arg, arg) for arg in self.args]
        env = {k: v.format(scratch=bench.scratch) for k, v in self.env.items()}
        done = bench.cli(*args, env=env)
        assert_one_line_error(done, self.code, self.message)


@dataclass(frozen=True)
class Api:
    """Call the Python client: expect ``error`` with ``message`` in it."""

    call: Callable[[Client], Any]
    error: type[Exception]
    message: str

    def check(self, bench: Bench) -> None:
        with pytest.raises(self.error) as raised:
            self.call(bench.local.client())
        assert self.message in str(raised.value)
        assert "\n" not in str(raised.value)


@dataclass(frozen=True)
class Raw:
    """Push ``payload`` on ``key``: ``counter`` (a status path) goes up by ``delta``, and the
    answer on ``answer_key`` (if any) contains ``message``, else the controller logs it."""

    key: str
    payload: bytes
    counter: tuple[str, ...] = ()
    delta: int = 1
    answer_key: str = ""
    message: str = ""

    def check(self, bench: Bench) -> None:
        before = _counter(bench.status(), self.counter)
        bench.redis.rpush(self.key, self.payload)
        if self.answer_key:
            found = bench.redis.blpop([self.answer_key], timeout=10)
            assert found is not None, "no answer from the controller"
            assert self.message in found[1].decode()
        else:
            wait_until(lambda: bench.redis.llen(self.key), 10, until=lambda n: n == 0,
                       what=f"{self.key} drained")
        if self.counter:
            wait_until(lambda: _counter(bench.status(), self.counter), 10,
                       until=lambda n: n == before + self.delta,
                       what=f"{'.'.join(self.counter)} == {before + self.delta}")
        if self.message and not self.answer_key:
            wait_until(lambda: self.message in bench.controller.tail(200), 10,
                       what=f"{self.message!r} logged")


@dataclass(frozen=True)
class Beat:
    """Register a worker heartbeat with ``payload``: it is counted as malformed, and the
    controller keeps going (its status still lists sane workers)."""

    payload: bytes

    def check(self, bench: Bench) -> None:
        before = _counter(bench.status(), ("malformed", "heartbeats"))
        # The beat before the id, as a worker writes them: the controller prunes an id whose
        # beat it does not find, and would never read this one again.
        bench.redis.set(KEYS.worker("garbage-worker"), self.payload, ex=10)
        bench.redis.sadd(KEYS.workers, "garbage-worker")
        try:
            wait_until(lambda: _counter(bench.status(), ("malformed", "heartbeats")), 10,
                       until=lambda n: n > before, what="a malformed heartbeat counted")
        finally:
            bench.redis.delete(KEYS.worker("garbage-worker"))
            bench.redis.srem(KEYS.workers, "garbage-worker")


@dataclass(frozen=True)
class Start:
    """``fleet controller`` on a data dir that ``prepare`` builds: expect ``code`` and one line."""

    prepare: Callable[[Bench], dict[str, str]]
    code: int
    message: str

    def check(self, bench: Bench) -> None:
        env = {"FLEET_NAMESPACE": "bad-start", **self.prepare(bench)}
        done = bench.cli("controller", env=env)
        assert_one_line_error(done, self.code, self.message)


def assert_one_line_error(done: subprocess.CompletedProcess, code: int, message: str) -> None:
    errors = [line for line in done.stderr.splitlines() if " INFO " not in line
              and " WARNING " not in line]
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1 and message in errors[0], done.stderr


def _counter(status: dict[str, Any], path: tuple[str, ...]) -> int:
    if not path:
        return 0
    value: Any = status
    for name in path:
        value = value.get(name, 0) if isinstance(value, dict) else 0
    return int(value or 0)


# -- data directories for the Start rows ---------------------------------------------------


def _log_with_jobs(data_dir: str, count: int = 3) -> None:
    log = open_log(data_dir)
    journal = Journal(log.table, log.writer)
    for i in range(count):
        journal.record(ev.enqueued({"id": f"old-{i}", "q": "default", "f": "tests.jobs:add",
                                    "a": [1, 2], "k": {}}, 1, 10, 1))
        journal.commit()
    log.close()


def _corrupt_middle(bench: Bench) -> dict[str, str]:
    data_dir = os.path.join(bench.scratch, "corrupt")
    _log_with_jobs(data_dir)
    (_, path), = list_segments(__import__("fleet.wal", fromlist=["Files"]).Files(), data_dir)
    with open(path, "r+b") as handle:
        handle.seek(20)
        handle.write(b"\xff\xff\xff")
    return {"FLEET_DATA_DIR": data_dir}


def _newer_snapshot(bench: Bench, prune: bool) -> str:
    data_dir = os.path.join(bench.scratch, f"newer-{prune}")
    _log_with_jobs(data_dir)
    log = open_log(data_dir)
    path = write_snapshot(log.table, data_dir)
    log.close()
    with open(path, "rb") as handle:
        data = handle.read()
    end = data.index(b"\n")
    header = {**orjson.loads(data[:end]), "version": 99}
    with open(path, "wb") as handle:
        handle.write(orjson.dumps(header) + data[end:])
    if prune:  # what a newer fleet does once its snapshot landed: drop what it covers
        files = __import__("fleet.wal", fromlist=["Files"]).Files()
        for _, segment in list_segments(files, data_dir):
            os.remove(segment)
        open(os.path.join(wal_dir(data_dir), segment_name(4)), "wb").close()
    return data_dir


def _not_a_directory(bench: Bench) -> dict[str, str]:
    return {"FLEET_DATA_DIR": os.path.join(bench.path("plain-file", "x"), "data")}


def _locked_dir(bench: Bench) -> dict[str, str]:
    return {"FLEET_DATA_DIR": bench.local.data_dir}


def _same_namespace(bench: Bench) -> dict[str, str]:
    return {"FLEET_NAMESPACE": "fleet", "FLEET_DATA_DIR": os.path.join(bench.scratch, "second")}


def _big_kwargs() -> str:
    return json.dumps([{"id": "big", "func": "tests.jobs:echo",
                        "kwargs": {"blob": "x" * (MAX_PAYLOAD_BYTES + 10)}}])


def _control(cmd: str, args: Any, req: str) -> bytes:
    return orjson.dumps({"req": req, "cmd": cmd, "args": args})


def _intake(req: str, jobs: Any) -> bytes:
    return orjson.dumps({"req": req, "jobs": jobs})


def _ack(job_id: Any, attempt: Any, outcome: Any = "ok") -> bytes:
    return orjson.dumps({"id": job_id, "n": attempt, "o": outcome, "w": "x", "h": "x"})


def _unserialisable(client: Client) -> Any:
    return client.enqueue("tests.jobs:echo", object())


ROWS = {
    # job files and arguments (refused by the client before anything is sent)
    "file-not-json": Cli(("enqueue", "--file", "f.json"), 2, "is not valid JSON",
                         files={"f.json": '[{"id": "a",'}),
    "jsonl-bad-line": Cli(("enqueue", "--file", "f.jsonl"), 2, "line 2 is not valid JSON",
                          files={"f.jsonl": '{"id": "a"}\n{"id": \n'}),
    "file-empty": Cli(("enqueue", "--file", "empty.json"), 2, "holds no jobs",
                      files={"empty.json": "  \n"}),
    "file-entry-not-object": Cli(("enqueue", "--file", "s.jsonl"), 2, "must be a JSON object",
                                 files={"s.jsonl": '"just a string"\n'}),
    "file-missing": Cli(("enqueue", "--file", "/nonexistent/jobs.json"), 2, "cannot read"),
    "args-not-a-list": Cli(("enqueue", "--file", "t.json"), 2, "args must be a list",
                           files={"t.json": '[{"id": "a", "args": "1,2"}]'}),
    "id-not-a-string": Cli(("enqueue", "--file", "t.json"), 2, "non-empty string",
                           files={"t.json": '[{"id": 5}]'}),
    "id-empty": Cli(("enqueue", "--file", "t.json"), 2, "non-empty string",
                    files={"t.json": '[{"id": ""}]'}),
    "id-oversized": Cli(("enqueue", "--file", "t.json"), 2, "at most 200",
                        files={"t.json": json.dumps([{"id": "x" * 201}])}),
    "id-with-space": Cli(("enqueue", "tests.jobs:add", "1", "2", "--id", "a b"), 2,
                         "no whitespace"),
    "duplicate-ids-in-file": Cli(("enqueue", "--file", "t.json"), 2, "appears more than once",
                                 files={"t.json": '[{"id": "d"}, {"id": "d"}]'}),
    "unknown-field": Cli(("enqueue", "--file", "t.json"), 2, "unknown field(s) colour",
                         files={"t.json": '[{"id": "a", "colour": "red"}]'}),
    "func-malformed": Cli(("enqueue", "rm -rf /"), 2, "func must be"),
    "payload-oversized": Cli(("enqueue", "--file", "big.json"), 2, "at most 524288",
                             files={"big.json": _big_kwargs()}),
    "timeout-negative": Cli(("enqueue", "tests.jobs:add", "--timeout", "-1"), 2,
                            "timeout must be"),
    "timeout-absurd": Cli(("enqueue", "tests.jobs:add", "--timeout", "1e12"), 2,
                          "timeout must be"),
    "retries-negative": Cli(("enqueue", "tests.jobs:add", "--retries", "-1"), 2,
                            "max_retries must be"),
    "retries-absurd": Cli(("enqueue", "tests.jobs:add", "--retries", "100000"), 2,
                          "max_retries must be"),
    "delay-negative": Cli(("enqueue", "tests.jobs:add", "--delay", "-5"), 2, "--delay must be"),
    "kwargs-not-json": Cli(("enqueue", "tests.jobs:add", "--kwargs", "{a: 1}"), 2,
                           "--kwargs is not valid JSON"),
    "queue-invalid": Cli(("enqueue", "tests.jobs:add", "--queue", "no/such queue"), 2,
                         "queue must match"),
    # where the request goes
    "redis-url-scheme": Cli(("status", "--redis-url", "http://127.0.0.1/0"), 2,
                            "must start with redis://"),
    "redis-url-port": Cli(("status", "--redis-url", "redis://127.0.0.1:port/0"), 2,
                          "invalid Redis URL"),
    "redis-down-at-enqueue": Cli(("enqueue", "tests.jobs:add", "1", "2", "--redis-url",
                                  f"redis://127.0.0.1:{free_port()}/0"), 4,
                                 "cannot reach Redis"),
    "controller-down-no-receipt": Cli(("enqueue", "tests.jobs:add", "1", "2"), 6,
                                      "may still be accepted",
                                      env={"FLEET_NAMESPACE": "nobody-home",
                                           "FLEET_RECEIPT_TIMEOUT_S": "0.5"}),
    "job-unknown": Cli(("job", "no-such-job"), 7, "no job 'no-such-job'"),
    "pause-invalid-queue": Cli(("pause", "no such queue"), 1, "queue must match"),
    "setting-out-of-range": Cli(("status",), 2, "lease_s = '-1' (from FLEET_LEASE_S)",
                                env={"FLEET_LEASE_S": "-1"}),
    # the Python API
    "api-args-not-json": Api(_unserialisable, JobSpecError, "arguments must be JSON"),
    "api-dict-key-not-string": Api(lambda c: c.enqueue("tests.jobs:echo", {1: 2}),
                                   JobSpecError, "arguments must be JSON"),
    "api-func-lambda": Api(lambda c: c.enqueue(lambda: 1), JobSpecError,
                           "not an importable module-level function"),
    "api-delay-and-run-at": Api(lambda c: c.enqueue("tests.jobs:add", delay_s=1, run_at=1),
                                JobSpecError, "not both"),
    # garbage straight into the lists the controller reads
    "intake-not-json": Raw(KEYS.intake, b"\x00\xffnot json", ("malformed", "intake"),
                           message="dropped a malformed intake request"),
    "intake-array": Raw(KEYS.intake, b"[1, 2, 3]", ("malformed", "intake")),
    "intake-no-req": Raw(KEYS.intake, b'{"jobs": []}', ("malformed", "intake")),
    "intake-jobs-not-list": Raw(KEYS.intake, _intake("r1", {"id": "x"}),
                                answer_key=KEYS.receipt("r1"),
                                message="request has no list of jobs"),
    "intake-wrong-types": Raw(KEYS.intake, _intake("r2", [{"id": "ok-1", "f": "tests.jobs:add",
                                                           "a": [1, 2]},
                                                          {"id": "bad-1", "f": 7}]),
                              answer_key=KEYS.receipt("r2"),
                              message='["ok-1","accepted"],["bad-1","rejected"'),
    "intake-oversized-payload": Raw(KEYS.intake, _intake("r3", [
        {"id": "big-raw", "f": "tests.jobs:echo", "a": ["x" * (MAX_PAYLOAD_BYTES + 1)]}]),
        answer_key=KEYS.receipt("r3"), message="at most 524288 allowed"),
    "intake-duplicate-ids": Raw(KEYS.intake, _intake("r4", [
        {"id": "twice", "f": "tests.jobs:add", "a": [1, 1]},
        {"id": "twice", "f": "tests.jobs:add", "a": [1, 1]}]),
        answer_key=KEYS.receipt("r4"), message='["twice","accepted"],["twice","duplicate"]'),
    "ack-not-json": Raw(KEYS.acks, b"\xff\xfe garbage", ("malformed", "acks"),
                        message="dropped an ack that is not JSON"),
    "ack-wrong-types": Raw(KEYS.acks, _ack(5, "1"), ("malformed", "acks")),
    "ack-unknown-outcome": Raw(KEYS.acks, _ack("canary-0", 1, "maybe"), ("malformed", "acks")),
    "ack-unknown-job": Raw(KEYS.acks, _ack("nobody", 1), ("stale_acks",)),
    "ack-wrong-attempt": Raw(KEYS.acks, _ack("canary-1", 99), ("stale_acks",)),
    "control-not-json": Raw(KEYS.control, b"{{{", ("malformed", "control"),
                            message="dropped a malformed control request"),
    "control-no-req": Raw(KEYS.control, b'{"cmd": "status"}', ("malformed", "control")),
    "control-unknown-command": Raw(KEYS.control, _control("format_disk", {}, "c1"),
                                   answer_key=KEYS.reply("c1"),
                                   message="unknown command 'format_disk'"),
    "control-wrong-arg-types": Raw(KEYS.control, _control("cancel", {"ids": "canary-2"}, "c2"),
                                   answer_key=KEYS.reply("c2"),
                                   message="ids must be a list of job ids"),
    "control-bad-limit": Raw(KEYS.control, _control("dead_list", {"limit": "all"}, "c3"),
                             answer_key=KEYS.reply("c3"), message='"ok":false'),
    "heartbeat-not-json": Beat(b"not json"),
    "heartbeat-wrong-types": Beat(b'{"id": 5, "jobs": 5, "executors": "many", "busy": "x"}'),
    # a controller that must not start
    "data-dir-not-a-directory": Start(_not_a_directory, 3, "cannot use data directory"),
    "data-dir-in-use": Start(_locked_dir, 3, "in use by another fleet process"),
    "wal-corrupt-in-the-middle": Start(_corrupt_middle, 3, "corrupt WAL record"),
    "snapshot-newer-version-log-pruned": Start(
        lambda b: {"FLEET_DATA_DIR": _newer_snapshot(b, prune=True)}, 3,
        "records 1..3 are missing; refused snapshot"),
    "second-controller": Start(_same_namespace, 5, "held by another controller"),
    "fsync-policy-unknown": Start(lambda b: {"FLEET_FSYNC": "sometimes"}, 2,
                                  "fsync = 'sometimes' (from FLEET_FSYNC)"),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input_is_refused_clearly_and_the_controller_keeps_running(bench, name):
    """The row's input gets its one-line error or its counted drop; the controller lives on."""
    if name not in bench.ran:  # else the last test needed it and sent it already
        ROWS[name].check(bench)
        bench.ran.add(name)
    assert bench.controller.alive(), bench.controller.tail()
    # No accepted job went missing: the canaries (and whatever rows accepted) are all known.
    assert sum(bench.status()["states"].values()) >= CANARIES


def test_snapshot_from_a_newer_version_is_refused_and_the_log_recovers(bench):
    """A snapshot with a newer schema is refused with a logged reason; the log it would have
    replaced still holds every job, so the controller starts with all of them."""
    data_dir = _newer_snapshot(bench, prune=False)
    os.makedirs(os.path.join(bench.scratch, "newer"))
    other = LocalFleet(bench.local.redis_url, workdir=os.path.join(bench.scratch, "newer"),
                       namespace="newer", env={**ENV, "FLEET_DATA_DIR": data_dir})
    try:
        proc = other.controller()
        assert sum(other.client().status()["states"].values()) == 3
        assert "refused snapshot" in proc.tail() and "schema version 99" in proc.tail()
    finally:
        other.stop_all()


def test_function_outside_the_allow_list_dies_once_with_not_allowed(bench):
    """A func the worker does not allow is accepted, then dead after one attempt: NotAllowed."""
    job = bench.local.client().enqueue("os:system", "true", job_id="not-allowed", max_retries=5)
    wait_until(job.status, 20, until=lambda state: state == "dead", what="not-allowed dead")
    info = job.info()
    assert info["attempt"] == 1 and info["error"].startswith("NotAllowed:")


def test_nothing_accepted_was_lost_to_the_bad_input(bench):
    """After every row, each canary job and each valid job sent beside bad ones completes."""
    client = bench.local.client()
    for name in ("intake-wrong-types", "intake-duplicate-ids"):
        if name not in bench.ran:  # the tests run in any order: send the rows this one needs
            ROWS[name].check(bench)
            bench.ran.add(name)
    ids = [f"canary-{i}" for i in range(CANARIES)] + ["ok-1", "twice"]
    wait_until(lambda: {i: client.job(i).status() for i in ids}, 30,
               until=lambda states: set(states.values()) == {"completed"},
               what="every canary and valid job completed")
    assert bench.controller.alive()
