"""Flow control through real processes: fleet-wide concurrency, rate and per-key limits,
priorities and expiry through the CLI, and limits kept across a controller's kill -9."""

from __future__ import annotations

import os
import signal
import time

import pytest

from fleet import build_spec
from fleet.testing.cluster import LocalFleet, finished
from tests.waiting import wait_until

from .helpers import terminal_counts, wal_events

pytestmark = pytest.mark.integration

TIMED = "tests.e2e_jobs:timed"


def _read(log_path: str) -> tuple[dict[str, list[tuple[int, int]]], dict[str, list[int]]]:
    """Each tag's starts ``(ns, pid)`` and ends ``ns``, from the jobs' log."""
    starts: dict[str, list[tuple[int, int]]] = {}
    ends: dict[str, list[int]] = {}
    if not os.path.exists(log_path):
        return starts, ends
    with open(log_path) as handle:
        for line in handle:
            parts = line.split()
            if parts[0] == "start":
                starts.setdefault(parts[1], []).append((int(parts[2]), int(parts[3])))
            elif parts[0] == "end":
                ends.setdefault(parts[1], []).append(int(parts[2]))
    return starts, ends


def _most_at_once(intervals: list[tuple[int, int]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = most = 0
    for _, step in edges:  # an end at the same instant as a start comes first (-1 < 1)
        running += step
        most = max(most, running)
    return most


def _intervals(log_path: str, killed_at: dict[str, int] | None = None
               ) -> list[tuple[int, int]]:
    """Every attempt's (start, end); a killed attempt ends when it was killed."""
    starts, ends = _read(log_path)
    out = []
    for tag, attempts in starts.items():
        finished_at = list(ends.get(tag, []))
        for start, _ in attempts:
            end = next((e for e in finished_at if e >= start), None)
            if end is None:
                end = (killed_at or {}).get(tag, time.time_ns())
            else:
                finished_at.remove(end)
            out.append((start, end))
    return out


def test_concurrency_2_holds_across_two_worker_fleets_and_a_killed_executor_frees_its_slot(
        local: LocalFleet, tmp_path):
    log_path = str(tmp_path / "jobs.log")
    local.controller()
    assert local.cli("limit", "set", "work", "--concurrency", "2").returncode == 0
    for _ in range(2):
        local.worker(4, "--queues", "work")
    specs = [build_spec(TIMED, [log_path, f"j{n:02d}", 300], job_id=f"j{n:02d}", queue="work")
             for n in range(40)]
    local.client().enqueue_many(specs)
    # a job of the middle is running: SIGKILL its executor
    victim = wait_until(lambda: _running(log_path), 30, what="a job running past the tenth")
    tag, pid = victim
    killed_ns = time.time_ns()
    os.kill(pid, signal.SIGKILL)
    local.wait_for(finished(40), timeout_s=90)
    intervals = _intervals(log_path, {tag: killed_ns})
    assert _most_at_once(intervals) <= 2
    starts, ends = _read(log_path)
    assert sorted(ends) == sorted(f"j{n:02d}" for n in range(40))  # every job finished
    assert len(starts[tag]) >= 2  # the killed one ran again
    counts = terminal_counts(wal_events(local.data_dir))
    assert all(counts[f"j{n:02d}"] == 1 for n in range(40))


def _running(log_path: str) -> tuple[str, int] | None:
    starts, ends = _read(log_path)
    if len(ends) < 10:
        return None
    for tag, attempts in starts.items():
        if tag not in ends:
            return tag, attempts[-1][1]
    return None


def test_rate_10_per_second_spreads_50_starts_over_more_than_4_5_seconds(
        local: LocalFleet, tmp_path):
    log_path = str(tmp_path / "jobs.log")
    local.controller()
    assert local.cli("limit", "set", "paced", "--rate", "10/s").returncode == 0
    local.worker(4, "--queues", "paced")
    client = local.client()
    # the workers up first (one job through), so no message waits in Redis for them
    client.enqueue(TIMED, log_path, "warm", queue="paced", job_id="warm")
    local.wait_for(finished(1), timeout_s=60)
    client.enqueue_many([build_spec(TIMED, [log_path, f"r{n}"], queue="paced")
                         for n in range(50)])
    local.wait_for(finished(51), timeout_s=60)
    starts = sorted(ns for tag, attempts in _read(log_path)[0].items() if tag != "warm"
                    for ns, _ in attempts)
    assert len(starts) == 50
    assert (starts[-1] - starts[0]) / 1e9 >= 4.5


def test_per_key_1_never_overlaps_a_key_and_a_small_key_is_not_held_back(
        local: LocalFleet, tmp_path):
    log_path = str(tmp_path / "jobs.log")
    local.controller()
    assert local.cli("limit", "set", "tenants", "--per-key", "1").returncode == 0
    client = local.client()
    client.enqueue_many([build_spec(TIMED, [log_path, f"big-{n:04d}"], queue="tenants",
                                    key="big") for n in range(1000)])
    client.enqueue_many([build_spec(TIMED, [log_path, f"small-{n}"], queue="tenants",
                                    key="small") for n in range(10)])
    local.worker(4, "--queues", "tenants")
    local.wait_for(finished(1010), timeout_s=120)
    starts, ends = _read(log_path)
    for prefix in ("big", "small"):
        mine = [(starts[t][0][0], ends[t][0]) for t in starts if t.startswith(prefix)]
        assert _most_at_once(mine) == 1, prefix
    small_done = max(ends[f"small-{n}"][0] for n in range(10))
    big_done = sorted(ends[t][0] for t in ends if t.startswith("big"))
    # the keys take turns: the small key's ten jobs (the same body) are done while the big
    # key has run a tenth of its thousand (in its queue's order they would come after all)
    assert small_done < big_done[100]


def test_priorities_expiry_and_limits_through_the_cli_survive_a_controller_kill(
        local: LocalFleet, tmp_path):
    log_path = str(tmp_path / "jobs.log")
    ctl = local.controller()
    assert local.cli("pause", "ranked").returncode == 0
    assert local.cli("limit", "set", "ranked", "--concurrency", "1", "--rate", "50/s"
                     ).returncode == 0
    for tag, priority in (("low", 0), ("high", 9), ("mid", 5), ("high2", 9)):
        done = local.cli("enqueue", TIMED, log_path, tag, "--id", tag, "--queue", "ranked",
                         "--priority", str(priority))
        assert done.returncode == 0, done.stderr
    done = local.cli("enqueue", TIMED, log_path, "stale", "--id", "stale", "--queue", "ranked",
                     "--expires", "0.5")
    assert done.returncode == 0, done.stderr
    time.sleep(0.6)
    ctl.kill9()
    local.controller()
    listed = local.cli("limit", "list", "--json")
    assert '"concurrency": 1' in listed.stdout and '"rate"' in listed.stdout
    assert local.cli("resume", "ranked").returncode == 0
    local.worker(2, "--queues", "ranked")
    local.wait_for(finished(5), timeout_s=60)
    starts = _read(log_path)[0]
    order = sorted(starts, key=lambda tag: starts[tag][0][0])
    assert order == ["high", "high2", "mid", "low"]
    shown = local.cli("job", "stale", "--json")
    assert '"state": "cancelled"' in shown.stdout and '"error": "expired"' in shown.stdout
    status = local.cli("status")
    assert "ranked" in status.stdout and "concurrency 1, rate 50/s" in status.stdout


@pytest.mark.parametrize("args, message", [
    (["limit", "set", "q", "--concurrency", "0"], "--concurrency"),
    (["limit", "set", "q", "--per-key", "-3"], "--per-key"),
    (["limit", "set", "q", "--concurrency", "10000000"], "--concurrency"),
    (["limit", "set", "q", "--rate", "ten a second"], "does not parse"),
    (["limit", "set", "q", "--rate", "0/s"], "more than 0"),
    (["limit", "set", "q"], "at least one of"),
    (["enqueue", "m:f", "--priority", "10"], "--priority"),
    (["enqueue", "m:f", "--expires", "-1"], "--expires"),
    (["enqueue", "m:f", "--key", "x" * 201], "key must be 1-200"),
])
def test_bad_limits_and_job_fields_are_one_line_errors_with_exit_2(local: LocalFleet, args,
                                                                    message):
    done = local.cli(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_the_config_files_limits_are_applied_at_start_and_recorded_when_they_differ(
        local: LocalFleet, tmp_path):
    config = tmp_path / "fleet.yaml"
    config.write_text("limits:\n  mail: {concurrency: 3, rate: 100/m}\n")
    ctl = local.controller("--config", str(config))
    listed = local.cli("limit", "list", "--json")
    assert '"concurrency": 3' in listed.stdout and "[\n      100.0,\n      60\n" in listed.stdout
    shown = local.cli("config", "show", "--config", str(config))
    assert "mail: concurrency 3, rate 100/m (burst 1)" in shown.stdout
    assert local.cli("limit", "set", "other", "--per-key", "2").returncode == 0
    ctl.stop()
    config.write_text("limits:\n  mail: {per_key: 1}\n")
    ctl = local.controller("--config", str(config))
    listed = local.cli("limit", "list")
    assert "mail" in listed.stdout and "per-key 1" in listed.stdout
    assert "concurrency 3" not in listed.stdout and "other" in listed.stdout
    ctl.stop()
    local.controller("--config", str(config))  # the same limits again: nothing recorded
    limit_records = [e for e in wal_events(local.data_dir) if e["t"] == "limit"]
    assert [e["q"] for e in limit_records] == ["mail", "other", "mail"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("limits:\n  mail: {concurrency: 0}\n")
    done = local.cli("config", "show", "--config", str(bad))
    assert done.returncode == 2 and "concurrency of queue mail" in done.stderr
