"""Fuzzing every message the controller reads: hostile content never stops it.

Hypothesis writes intake requests, acks, control requests and heartbeats (wrong types,
missing and extra fields, deep nesting, huge values, NaN, lone surrogates, NUL, not JSON,
truncated JSON, messages over the size limit) into a private redis-server, and a real
Controller on a manual clock steps over them. After every example the controller has not
raised, logged no error, committed what it recorded and its table validates; afterwards a
genuine job still completes, and the log replays to the same sound table.
"""

from __future__ import annotations

import json
import logging

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.config import Settings
from fleet.controller import Controller
from fleet.controller.control import COMMANDS
from fleet.keys import Keys
from fleet.wal import open_log

KEYS = Keys("fleet")
MAX_MESSAGE_BYTES = 16 * 1024
SEEDED = [f"seed-{n}" for n in range(8)]  # jobs in flight before the fuzzing starts

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=20) | st.sampled_from(["", "\x00", "\u202e", "\ud800", "<script>",
                                                    " id ", "a\nb", "x" * 300]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)


def _nested(depth: int, leaf: object = 1) -> object:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


deep = st.integers(min_value=120, max_value=300).map(_nested)
field_values = values | deep | st.sampled_from(SEEDED) | st.sampled_from([1, 2, "ok", "fail"])


def _encoded(value: object) -> bytes:
    """JSON as a careless or hostile writer makes it: NaN, Infinity and lone surrogates kept."""
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def _messages(fields: dict[str, st.SearchStrategy], good: dict[str, st.SearchStrategy]
              ) -> st.SearchStrategy[bytes]:
    """Objects shaped like a real message of one kind: a good one with a field or two wrong,
    or any of its fields (and others) present or not, of any type."""
    nearly = st.tuples(st.fixed_dictionaries(good), st.dictionaries(
        st.sampled_from([*fields, "extra"]), field_values, max_size=2)).map(
        lambda parts: {**parts[0], **parts[1]})
    shaped = st.fixed_dictionaries({}, optional={**fields, "extra": values})
    wrong = st.dictionaries(st.sampled_from([*fields, "zz"]), field_values, max_size=6)
    return (nearly | shaped | wrong).map(_encoded)


REQUEST_IDS = st.text(min_size=1, max_size=8)


jobs = st.fixed_dictionaries({}, optional={
    "id": st.text(max_size=10) | field_values, "f": st.sampled_from(
        ["fleet.demo:simulate", "tests.jobs:add", "os:system", "no such", ""]) | field_values,
    "q": st.sampled_from(["default", "bad queue", ""]) | field_values,
    "a": field_values, "k": st.dictionaries(st.text(max_size=4), field_values, max_size=2)
    | field_values, "to": field_values, "mr": field_values, "nb": field_values})
good_job = st.fixed_dictionaries({"id": st.text(min_size=1, max_size=6),
                                  "f": st.just("fleet.demo:simulate"), "k": values})
intake = _messages({"req": REQUEST_IDS | field_values,
                    "jobs": st.lists(jobs | good_job, max_size=3) | field_values,
                    "ts": field_values},
                   {"req": REQUEST_IDS, "jobs": st.lists(good_job, min_size=1, max_size=3)})
acks = _messages({"id": st.sampled_from(SEEDED) | field_values,
                  "n": st.sampled_from([1, 2]) | field_values,
                  "o": st.sampled_from(["ok", "fail", "rel", "cancelled"]) | field_values,
                  "r": field_values, "e": field_values, "fin": field_values,
                  "w": field_values, "h": field_values, "st": field_values,
                  "ft": field_values},
                 {"id": st.sampled_from(SEEDED), "n": st.just(1),
                  "o": st.sampled_from(["ok", "fail", "rel"]), "r": values | deep})
control = _messages({"req": REQUEST_IDS | field_values,
                     "cmd": st.sampled_from(sorted(COMMANDS)) | field_values,
                     "args": st.dictionaries(st.sampled_from(
                         ["ids", "id", "all", "limit", "older_than_s", "queue"]), field_values,
                         max_size=3) | field_values},
                    {"req": REQUEST_IDS, "cmd": st.sampled_from(sorted(COMMANDS)),
                     "args": st.fixed_dictionaries({}, optional={
                         "ids": st.lists(st.sampled_from(SEEDED)), "id": st.sampled_from(SEEDED),
                         "all": st.booleans(), "limit": field_values,
                         "older_than_s": field_values, "queue": st.just("default")})})
beats = _messages({"id": st.text(max_size=8) | field_values, "host": field_values,
                   "pid": field_values, "ts": field_values, "executors": field_values,
                   "busy": field_values, "queues": field_values, "done": field_values,
                   "jobs": st.lists(st.lists(field_values, max_size=3), max_size=3)
                   | field_values},
                  {"id": st.just("fuzz"), "ts": st.integers(0, 2**40),
                   "executors": st.integers(0, 2**63), "queues": st.just(["default"]),
                   "jobs": st.lists(st.tuples(st.sampled_from(SEEDED), st.integers(1, 2)),
                                    max_size=3)})
garbage = (st.binary(max_size=64)
           | st.sampled_from([b"", b"\x00", b"[" * 1100, b"{" * 300, b"NaN", b"1e400",
                              b'"\\ud800"', b"\xff\xfe", b'{"req": "r", "jobs": [',
                              b'{"id": "seed-0", "n": 1, "o": "ok", "r": ' + b"[" * 253
                              + b"]" * 253 + b"}"])
           | st.integers(min_value=MAX_MESSAGE_BYTES - 50, max_value=MAX_MESSAGE_BYTES * 2).map(
               lambda n: b'{"req": "big", "id": "seed-1", "n": 1, "o": "ok", "r": "'
               + b"x" * n + b'"}'))


def _truncated(message: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.tuples(message, st.floats(0, 1)).map(lambda m: m[0][:int(len(m[0]) * m[1])])


def _content(kind: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return kind | _truncated(kind) | garbage


LISTS = {"intake": KEYS.intake, "acks": KEYS.acks, "control": KEYS.control}
CONTENT = {"intake": _content(intake), "acks": _content(acks), "control": _content(control),
           "heartbeat": _content(beats)}


class Bed:
    """A real controller on a private Redis, stepped by hand on a manual clock."""

    def __init__(self, redis_url: str, data_dir: str) -> None:
        self.now_ms = 1_700_000_000_000
        self.settings = Settings(redis_url=redis_url, data_dir=data_dir, metrics_port=0,
                                 fsync="off", max_message_bytes=MAX_MESSAGE_BYTES,
                                 batch_bytes=4 * MAX_MESSAGE_BYTES, heartbeat_s=0.05)
        self.redis = redis.Redis.from_url(redis_url)
        self.ctl = Controller(self.settings, clock=lambda: self.now_ms, fork_snapshots=False)
        self.ctl.start(serve_metrics=False)
        self.open = True

    def close(self) -> None:
        if self.open:
            self.ctl.close()
            self.open = False

    def step(self, times: int = 2) -> None:
        for _ in range(times):
            self.now_ms += 20
            self.ctl.step()

    def enqueue(self, ids: list[str], request_id: str) -> bytes:
        jobs = [{"id": i, "f": "tests.jobs:add", "a": [1, 2]} for i in ids]
        self.redis.rpush(KEYS.intake, orjson.dumps({"req": request_id, "jobs": jobs}))
        self.step()
        return self.redis.lpop(KEYS.receipt(request_id)) or b""

    def run_ready(self) -> list[str]:
        """Play the worker: pop every ready message and ack it ok."""
        done = []
        while (raw := self.redis.lpop(KEYS.ready("default"))) is not None:
            message = orjson.loads(raw)
            self.redis.rpush(KEYS.acks, orjson.dumps(
                {"id": message["id"], "n": message["n"], "o": "ok", "r": 3}))
            done.append(message["id"])
        self.step()
        return done


@pytest.fixture()
def bed(redis_url, tmp_path):
    bed = Bed(redis_url, str(tmp_path / "data"))
    yield bed
    bed.close()


def test_no_hostile_message_stops_the_controller_and_a_genuine_job_still_completes(
        bed, caplog):
    """Hostile content of every kind the controller reads never raises, never logs an error,
    leaves the table valid and committed; a job sent afterwards completes, across a replay."""
    assert b"accepted" in bed.enqueue(SEEDED, "seed")
    bed.step()
    caplog.set_level(logging.WARNING, logger="fleet")

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(kind=st.sampled_from(sorted(CONTENT)), data=st.data())
    def feed(kind: str, data: st.DataObject) -> None:
        content = data.draw(CONTENT[kind])
        caplog.clear()
        if kind == "heartbeat":
            bed.redis.sadd(KEYS.workers, "fuzz")
            bed.redis.set(KEYS.worker("fuzz"), content)
            bed.ctl.housekeeping.read_heartbeats(bed.now_ms)
        else:
            bed.redis.rpush(LISTS[kind], content)
        bed.step()
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []
        assert bed.ctl.journal.pending == []
        assert bed.ctl.journal.table.validate() == []
        for key in LISTS.values():
            assert bed.redis.llen(key) == 0

    feed()
    bed.redis.delete(KEYS.workers, KEYS.worker("fuzz"))
    bed.ctl.housekeeping.read_heartbeats(bed.now_ms)
    bed.redis.rpush(KEYS.control, orjson.dumps({"req": "go", "cmd": "resume",
                                                "args": {"queue": "default"}}))
    assert b'"accepted"' in bed.enqueue(["genuine"], "genuine")
    bed.step()
    assert "genuine" in bed.run_ready()
    assert bed.ctl.journal.table.get("genuine").state == "completed"
    bed.close()
    replayed = open_log(bed.settings.data_dir)
    try:
        assert replayed.table.get("genuine").state == "completed"
        assert replayed.table.validate() == []
    finally:
        replayed.close()
