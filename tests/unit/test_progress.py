"""Job progress: ``current_job().progress()`` checks and stores, the executor's courier sends
the latest, the supervisor's beat carries it, the controller keeps it for the running attempt
only (docs/protocol.md §5, "Progress")."""

from __future__ import annotations

import dataclasses
import math
import time
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson
import pytest

import fleet
from fleet.cli.jobs import progress_text
from fleet.context import MAX_PROGRESS_MESSAGE_CHARS, CurrentJob, checked_progress
from fleet.controller.liveness import Liveness
from fleet.protocol.heartbeat import decode_heartbeat, encode_heartbeat, encode_progress
from fleet.testing import InlineClient
from fleet.worker.handle import RunningJob
from fleet.worker.heartbeat import heartbeat_payload
from fleet.worker.progress import ProgressCourier
from fleet.worker.wire import Identity

NOW_MS = 1_764_270_002_000


def reporting_job(fraction: Any, message: Any = "") -> str:
    """A job function: reports once and returns what ``current_job()`` said it is."""
    job = fleet.current_job()
    assert job is not None
    job.progress(fraction, message)
    return job.id


# -- the context API ------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0, 1, 0.0, 0.5, 1.0, Fraction(1, 3)])
def test_a_fraction_from_0_to_1_is_kept_as_a_float(fraction):
    """Any real number from 0 to 1 is taken, as a float."""
    kept, message = checked_progress(fraction, "m")
    assert type(kept) is float and kept == float(fraction) and message == "m"


@pytest.mark.parametrize("fraction", [math.nan, math.inf, -math.inf, -0.01, 1.01, 2, -1,
                                      True, False, None, "0.5", [0.5], 1j,
                                      Decimal("0.5")])
def test_a_fraction_that_is_not_a_finite_number_from_0_to_1_is_a_value_error(fraction):
    """NaN, infinities, out of range, bools, strings and other non-numbers: one-line
    ValueError naming the rule."""
    with pytest.raises(ValueError, match="progress fraction must be") as caught:
        checked_progress(fraction, "")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("message", [None, 3, b"bytes", ["a"]])
def test_a_message_that_is_not_a_string_is_a_value_error(message):
    """The message is a string or nothing."""
    with pytest.raises(ValueError, match="progress message must be a string"):
        checked_progress(0.5, message)


def test_a_long_message_is_cut():
    """A message past the limit is cut to it."""
    _, message = checked_progress(0.5, "x" * 10_000)
    assert message == "x" * MAX_PROGRESS_MESSAGE_CHARS


def test_progress_hands_the_checked_value_to_whoever_runs_the_job():
    """``progress`` calls who it reports to with the checked value; without one it does
    nothing."""
    seen: list[tuple[float, str]] = []
    job = CurrentJob("a", 1, "q", None, None).reporting_to(lambda f, m: seen.append((f, m)))
    job.progress(1, "done")
    CurrentJob("a", 1, "q", None, None).progress(0.5)
    assert seen == [(1.0, "done")]
    assert job == CurrentJob("a", 1, "q", None, None)  # not part of what the job is
    assert "_on_progress" not in dataclasses.asdict(job)  # asdict stays JSON


def test_inline_mode_checks_progress_and_keeps_nothing():
    """Under the InlineClient a report does not fail the job, a bad one does, and the record
    shows no progress (the attempt has ended)."""
    client = InlineClient()
    handle = client.enqueue(f"{__name__}:reporting_job", 0.5, "half")
    assert handle.result() == handle.id
    assert client.request("job", id=handle.id)["progress"] is None
    bad = client.enqueue(f"{__name__}:reporting_job", 2, max_retries=0)
    assert "ValueError: progress fraction must be from 0.0 to 1.0, got 2" in \
        client.request("job", id=bad.id)["error"]


# -- the worker: courier, supervisor, heartbeat ----------------------------------------------


def test_the_courier_stores_only_the_latest_and_sends_it_once():
    """Many reports between two sends cost one event, of the latest value; nothing new,
    nothing sent; after ``forget`` nothing either."""
    sent: list[tuple[Any, ...]] = []
    courier = ProgressCourier(sent.append, every_s=3600)  # the thread never sends in the test
    report = courier.reporter("job-1", 2)
    for i in range(1000):
        report(i / 1000, f"step {i}")
    courier.flush()
    courier.flush()
    assert len(sent) == 1 and sent[0][:5] == ("p", "job-1", 2, 0.999, "step 999")
    assert abs(sent[0][5] - time.time() * 1000) < 60_000
    report(1.0, "done")
    courier.forget()
    courier.flush()
    assert len(sent) == 1


def test_the_courier_thread_sends_the_latest_value_without_another_report():
    """A job that reports once and then works silently still has its report sent."""
    sent: list[tuple[Any, ...]] = []
    courier = ProgressCourier(sent.append, every_s=0.01)
    courier.reporter("job-1", 1)(0.5, "half")
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent and sent[0][:5] == ("p", "job-1", 1, 0.5, "half")


def test_the_courier_makes_a_lone_surrogate_encodable():
    """Job code may pass a lone surrogate; what is sent can be encoded as JSON."""
    sent: list[tuple[Any, ...]] = []
    courier = ProgressCourier(sent.append, every_s=3600)
    courier.reporter("j", 1)(0.1, "bad \udc80 text")
    courier.flush()
    assert orjson.dumps(sent[0][4]) == b'"bad \\\\udc80 text"'


def _handle_with(job: RunningJob | None) -> Any:
    from fleet.worker.handle import ExecutorHandle
    handle = ExecutorHandle.__new__(ExecutorHandle)
    handle.job, handle.held = job, []
    return handle


def test_the_supervisor_keeps_progress_only_for_the_job_its_executor_runs():
    """A ``p`` event of the running attempt is kept with it; one of another job or attempt
    (sent after that job ended) is ignored; the next job starts with none."""
    handle = _handle_with(RunningJob("a", 1, 10, 30.0, 0.0))
    handle._apply(("p", "a", 1, 0.4, "copying", 99), [], 0.0)
    assert handle.job.progress == (0.4, "copying", 99)
    handle._apply(("p", "a", 2, 0.9, "old", 100), [], 0.0)
    handle._apply(("p", "b", 1, 0.9, "other", 100), [], 0.0)
    assert handle.job.progress == (0.4, "copying", 99)
    handle._apply(("s", "b", 1, 20, 30.0, [], ("a", 1, True), (True, None)), [], 0.0)
    assert handle.job.progress is None


def test_the_heartbeat_carries_each_jobs_latest_progress():
    """A job with progress gets its fourth element; one without keeps three."""
    jobs = [RunningJob("a", 1, 10, 30.0, 0.0, (0.4, "copying", 99)),
            RunningJob("b", 3, 11, 30.0, 0.0)]
    beat = heartbeat_payload(Identity("w1", "h"), 1, 0, ["default"], 2, jobs, 0, 0)
    assert beat["jobs"] == [["a", 1, 10, {"f": 0.4, "m": "copying", "ts": 99}], ["b", 3, 11]]
    assert decode_heartbeat(orjson.dumps(beat)) == (beat, True)


# -- the wire: a bad progress is dropped, the job entry and the beat are kept -----------------


def _beat_with(progress: Any, job_id: str = "a", worker: str = "w1", ts: int = 1) -> bytes:
    return orjson.dumps(encode_heartbeat(worker, "h", 1, 0, ts, ["default"], 1,
                                         [[job_id, 1, 10, progress]], 0, 0))


@pytest.mark.parametrize("progress", [
    None, 0.5, "half", [0.5, "m", 1], {}, {"f": "0.5", "ts": 1}, {"f": True, "ts": 1},
    {"f": None, "m": "NaN as orjson writes it", "ts": 1}, {"f": -0.1, "ts": 1},
    {"f": 1.5, "ts": 1}, {"f": 1e308, "ts": 1}, {"f": 0.5, "m": 5, "ts": 1},
    {"f": 0.5, "m": "x" * (MAX_PROGRESS_MESSAGE_CHARS + 1), "ts": 1},
    {"f": 0.5, "m": "x" * 5_000_000, "ts": 1}, {"f": 0.5}, {"f": 0.5, "ts": "now"},
    {"f": 0.5, "ts": 1.5}, {"f": 0.5, "ts": True}])
def test_a_malformed_progress_is_cut_off_and_the_job_entry_kept(progress):
    """Wrong types, out of range, a NaN (null on the wire), a huge message, no time: the
    progress is dropped, the beat marked unclean, the job still listed (its lease extended)."""
    beat, clean = decode_heartbeat(_beat_with(progress))
    assert beat is not None and not clean
    assert beat["jobs"] == [["a", 1, 10]]


def test_a_good_progress_is_kept_and_a_missing_message_reads_as_empty():
    """``m`` is optional; an integer fraction reads as a float."""
    beat, clean = decode_heartbeat(_beat_with({"f": 1, "ts": 5}))
    assert clean and beat is not None
    assert beat["jobs"] == [["a", 1, 10, encode_progress(1.0, "", 5)]]


def test_a_progress_literal_nan_makes_the_beat_unreadable_as_any_bad_json_does():
    """orjson never writes NaN; a writer that does has sent no JSON, and nothing raises."""
    raw = _beat_with({"f": 0.5, "ts": 1}).replace(b'"f":0.5', b'"f":NaN')
    assert decode_heartbeat(raw) == (None, False)


# -- the controller: the latest value, for the worker credited with the attempt -------------


def _liveness_after(*raw_beats: bytes) -> Liveness:
    liveness = Liveness(1000)
    liveness.on_heartbeats(liveness.parse_beats(list(raw_beats)), NOW_MS)
    return liveness


def test_the_controller_shows_the_latest_progress_and_its_age():
    """The running attempt's progress, its age on the controller's clock."""
    liveness = _liveness_after(_beat_with(encode_progress(0.4, "copying", NOW_MS - 1200)))
    assert liveness.progress_of("a", 1, NOW_MS) == {"fraction": 0.4, "message": "copying",
                                                    "age_s": 1.2}
    assert liveness.progress_of("a", 2, NOW_MS) is None  # another attempt
    assert liveness.progress_of("b", 1, NOW_MS) is None  # never reported
    assert liveness.progress_of("a", 1, NOW_MS - 5000)["age_s"] == 0  # a clock ahead


def test_progress_from_a_worker_not_credited_with_the_attempt_is_ignored():
    """Two beats name the job: only the worker that ``running_on`` credits may speak for its
    progress, and a worker that stopped naming it is forgotten with its progress."""
    other = orjson.dumps(encode_heartbeat("w2", "h", 2, 0, 1, ["default"], 1,
                                          [["a", 1, 10]], 0, 0))
    liveness = _liveness_after(_beat_with(encode_progress(0.9, "forged", NOW_MS), worker="w1"),
                               other)
    assert liveness.running_on["a"] == (1, "w2")
    assert liveness.progress_of("a", 1, NOW_MS) is None
    liveness = _liveness_after(_beat_with(encode_progress(0.5, "", NOW_MS)))
    assert liveness.progress_of("a", 1, NOW_MS) is not None
    liveness.on_heartbeats(liveness.parse_beats([_beat_with(None, job_id="z", ts=2)]), NOW_MS)
    assert liveness.progress_of("a", 1, NOW_MS) is None


def test_progress_of_a_job_the_beat_does_not_run_never_reaches_the_controller():
    """Progress lives in a ``jobs`` entry: a job not listed has nowhere to carry it, and an
    entry naming it makes the worker its holder only for that attempt."""
    liveness = _liveness_after(_beat_with(encode_progress(0.5, "x", NOW_MS), job_id="other"))
    assert set(liveness.progress) == {"other"} and liveness.progress_of("a", 1, NOW_MS) is None


@pytest.mark.parametrize(("progress", "shown"), [
    ({"fraction": 0.4, "message": "copying", "age_s": 1.23}, "40% (copying) 1.2 s ago"),
    ({"fraction": 1.0, "message": "", "age_s": 0}, "100% 0.0 s ago"),
    ({"fraction": 0.5, "message": "two\nlines", "age_s": 2}, "50% ('two\\nlines') 2.0 s ago")])
def test_fleet_job_prints_progress_on_one_line(progress, shown):
    """Percent, message (quoted when not printable) and age."""
    assert progress_text(progress) == shown
