"""The chaos runner in miniature: every kind of fault once, through real processes."""

from __future__ import annotations

import pytest

from fleet.errors import ConfigError
from fleet.testing.chaos import ChaosConfig, run_chaos
from fleet.testing.chaos.checker import Inputs, check, fold_log, read_timeline
from fleet.testing.chaos.faults import DEFAULT_COUNTS, FAULT_KINDS, parse_faults
from fleet.testing.chaos.report import fault_lines, summary_table

pytestmark = pytest.mark.integration


def test_chaos_run_with_every_fault_loses_nothing(tmp_path):
    """Every fault kind once (process kills and stops, Redis emptied, lists deleted, rolled
    back, out of memory, the controller's clock stepped back and forward) during a mixed
    workload: no job lost, none finished twice, none dead without having run, no controller
    crash, the record agrees with itself."""
    faults = dict.fromkeys(FAULT_KINDS, 1) | {"clock-step": 2}  # one step back, one forward
    config = ChaosConfig(jobs=400, seed=20261127, faults=faults, workers=2, executors=2,
                         deadline_s=90, workdir=str(tmp_path))
    result = run_chaos(config)
    report = "\n".join([summary_table(result), *fault_lines(result)])
    left_out = sum(faults[kind] for kind in result.faults.left_out)
    assert len(result.faults.fired) + left_out == sum(faults.values()), report
    assert result.finished_in_time, report
    assert not result.verdict.lost, report
    assert not result.verdict.two_terminal, report
    assert not result.verdict.disagreements, report
    assert not result.verdict.phantom, report
    assert not result.verdict.dead_never_ran, report
    assert not result.faults.exits, report
    assert result.verdict.enqueued == 400, report
    assert result.ok, report


def test_fault_list_names_kinds_and_counts():
    """``--faults`` takes kinds with or without counts, ``all`` and ``none``; an unknown kind
    or a bad count is refused in one line that lists the kinds."""
    assert parse_faults("del-ready=3,oom") == {"del-ready": 3, "oom": DEFAULT_COUNTS["oom"]}
    assert parse_faults("all") == DEFAULT_COUNTS
    assert parse_faults("none") == {}
    assert parse_faults("all,clock-step=0")["clock-step"] == 0
    with pytest.raises(ConfigError, match="unknown fault 'kill-redis'.*del-acks"):
        parse_faults("kill-redis")
    with pytest.raises(ConfigError, match="not a whole number"):
        parse_faults("oom=-1")


def _inputs(events, executions, timeline=()):
    """Checker inputs whose record (status, lookups, dead list) agrees with ``events``."""
    folded, _ = fold_log(events)
    live = {job_id: job for job_id, job in folded.items() if job.state != "forgotten"}
    states = {name: sum(1 for job in live.values() if job.state == name)
              for name in ("completed", "dead", "cancelled")}
    return Inputs(kinds=dict.fromkeys(folded, "fast"), expected={}, confirmed=set(folded),
                  executions=list(executions), status={"states": states},
                  dead_list=[{"id": i} for i, job in live.items() if job.state == "dead"],
                  lookups={i: {"state": job.state, "attempt": 1} for i, job in live.items()},
                  cli_lookups={}, events=events, timeline=list(timeline))


def _log(*records):
    return [dict(record, s=seq) for seq, record in enumerate(records, start=1)]


def test_checker_fails_a_job_dead_without_ever_having_run():
    """A job the record says dead, with no start of any attempt in the execution log, is
    "dead without ever having run" and fails the verdict; one that ran and died does not."""
    events = _log({"t": "enq", "id": "a", "mr": 0}, {"t": "disp", "id": "a", "n": 1},
                  {"t": "exp", "id": "a", "n": 1},
                  {"t": "enq", "id": "b", "mr": 0}, {"t": "disp", "id": "b", "n": 1},
                  {"t": "fail", "id": "b", "n": 1, "e": "ExecutorDied: killed"})
    verdict = check(_inputs(events, [("b", 1, 99)]))
    assert [line.split(":")[0] for line in verdict.dead_never_ran] == ["a"]
    assert verdict.failed_unstarted == {"exp": 1}
    assert not verdict.ok


def test_checker_reports_a_run_after_completion_without_failing():
    """An execution that starts after the job's successful run logged its end is reported as
    "ran again after it completed"; the record is right, so the verdict still passes."""
    events = _log({"t": "enq", "id": "a", "mr": 3}, {"t": "disp", "id": "a", "n": 1},
                  {"t": "ack", "id": "a", "n": 1})
    timeline = [("a", 1, False), ("a", 1, True), ("a", 1, False)]
    verdict = check(_inputs(events, [("a", 1, 7), ("a", 1, 8)], timeline))
    assert len(verdict.ran_after_completed) == 1
    assert verdict.ok


def test_checker_counts_a_job_forgotten_and_accepted_again_as_two_terminal():
    """A finished job compacted early and then accepted again ends twice in the log: the
    checker counts it in two terminal states, not as a fresh job."""
    events = _log({"t": "enq", "id": "a", "mr": 3}, {"t": "disp", "id": "a", "n": 1},
                  {"t": "ack", "id": "a", "n": 1}, {"t": "compact", "ids": ["a"]},
                  {"t": "enq", "id": "a", "mr": 3}, {"t": "disp", "id": "a", "n": 1},
                  {"t": "ack", "id": "a", "n": 1})
    verdict = check(_inputs(events, [("a", 1, 7), ("a", 1, 8)]))
    assert verdict.two_terminal == ["a"]
    assert verdict.enqueued_twice == ["a"] and verdict.forgotten == []


def test_execution_timeline_keeps_starts_and_ends_in_order(tmp_path):
    """The execution log's start lines and ``done`` lines are read back in the order written."""
    path = tmp_path / "executions.log"
    path.write_text("a 1 10\na 1 10 done\nb 2 11\n")
    assert read_timeline(str(path)) == [("a", 1, False), ("a", 1, True), ("b", 2, False)]


def test_checker_reports_a_job_dead_after_a_successful_run():
    """A job whose execution ran to its end but whose record says dead (its ack was lost and
    the lease charged) is reported as dead after a successful run, not as dead unrun."""
    events = _log({"t": "enq", "id": "a", "mr": 0}, {"t": "disp", "id": "a", "n": 1},
                  {"t": "exp", "id": "a", "n": 1})
    timeline = [("a", 1, False), ("a", 1, True)]
    verdict = check(_inputs(events, [("a", 1, 7)], timeline))
    assert len(verdict.dead_after_success) == 1
    assert verdict.dead_never_ran == [] and verdict.failed_unstarted == {}
