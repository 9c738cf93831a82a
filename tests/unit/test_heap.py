"""The collector pause (fleet/heap.py): off inside, restored after, whatever happens inside;
and ``fleet enqueue --file`` holding it over reading, sending and reporting its jobs."""

from __future__ import annotations

import gc

import pytest
from click.testing import CliRunner

from fleet.cli import app
from fleet.cli import jobs as cli_jobs
from fleet.errors import JobSpecError
from fleet.heap import collector_paused


@pytest.fixture(autouse=True)
def _collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_off_inside_and_on_after() -> None:
    """The collector is off inside the block and on again after it."""
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_restored_after_an_exception() -> None:
    """An exception inside the block still turns the collector back on."""
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("inside")
    assert gc.isenabled()


def test_left_off_when_it_was_off() -> None:
    """A collector that was off before stays off after."""
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_nested_pauses_restore_once() -> None:
    """An inner pause ending does not turn the collector on inside an outer one."""
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_objects_someone_froze_stay_frozen() -> None:
    """Objects frozen on purpose before the pause are not unfrozen by it."""
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_paused():
            kept = [[n] for n in range(1000)]
        assert gc.get_freeze_count() == frozen
        assert len(kept) == 1000
    finally:
        gc.unfreeze()


def test_objects_made_inside_are_collected_after() -> None:
    """A cycle made during the pause is freed by a collection after it."""
    class Node:
        other: object = None

    with collector_paused():
        first, second = Node(), Node()
        first.other, second.other = second, first  # a cycle: only the collector frees it
        del first, second
        assert [obj for obj in gc.get_objects() if type(obj) is Node]  # not freed yet
    gc.collect()
    assert not [obj for obj in gc.get_objects() if type(obj) is Node]


def test_enqueue_file_runs_with_the_collector_off(tmp_path, monkeypatch) -> None:
    """`fleet enqueue --file` sends its jobs with the collector off, and turns it on after."""
    seen = []

    def send(client, wires):
        seen.append((gc.isenabled(), len(wires)))
        return []

    monkeypatch.setattr(cli_jobs, "_send", send)
    monkeypatch.setattr(cli_jobs, "client_from", lambda *a, **k: None)
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"func": "m:f", "args": [1]}\n{"func": "m:f", "args": [2]}\n')
    result = CliRunner().invoke(app, ["enqueue", "--file", str(path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert seen == [(False, 2)]
    assert gc.isenabled()


def test_a_bad_file_leaves_the_collector_on(tmp_path) -> None:
    """A job file refused at a bad line leaves the collector on."""
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"func": "m:f"}\n{"func": "not a func"}\n')
    result = CliRunner().invoke(app, ["enqueue", "--file", str(path)])
    # fleet's main() turns the JobSpecError into one line and exit 2 (test_bad_input.py)
    assert isinstance(result.exception, JobSpecError)
    assert "job 2" in str(result.exception)
    assert gc.isenabled()


def test_one_job_from_flags_leaves_the_collector_alone(monkeypatch) -> None:
    """`fleet enqueue FUNC ARGS` never pauses the collector."""
    seen = []
    monkeypatch.setattr(cli_jobs, "_send", lambda client, wires: seen.append(gc.isenabled())
                        or [])
    monkeypatch.setattr(cli_jobs, "client_from", lambda *a, **k: None)
    result = CliRunner().invoke(app, ["enqueue", "m:f", "1"])
    assert result.exit_code == 0, result.output
    assert seen == [True]
