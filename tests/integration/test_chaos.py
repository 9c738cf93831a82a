"""The chaos runner in miniature: every kind of fault once, through real processes."""

from __future__ import annotations

import pytest

from fleet.testing.chaos import ChaosConfig, run_chaos
from fleet.testing.chaos.report import fault_lines, summary_table

pytestmark = pytest.mark.integration


def test_chaos_run_with_every_fault_loses_nothing(tmp_path):
    """Controller, supervisor and executor kills, an empty Redis restart and a stalled worker
    during a mixed workload: no job lost, none finished twice, the record agrees with itself."""
    config = ChaosConfig(jobs=400, seed=20261127, controller_kills=1, executor_kills=2,
                         supervisor_kills=1, redis_restarts=1, stalls=1, workers=2,
                         executors=2, deadline_s=90, workdir=str(tmp_path))
    result = run_chaos(config)
    report = "\n".join([summary_table(result), *fault_lines(result)])
    assert result.finished_in_time, report
    assert not result.verdict.lost, report
    assert not result.verdict.two_terminal, report
    assert not result.verdict.disagreements, report
    assert not result.verdict.phantom, report
    assert result.verdict.enqueued == 400, report
    assert len(result.faults.fired) == 6, report
    assert result.ok, report
