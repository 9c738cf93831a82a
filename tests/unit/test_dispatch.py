"""The dispatcher's ready window, sized to the workers and to the rate for short jobs; and how
delayed jobs join their lines."""

from __future__ import annotations

from fleet.config import Settings
from fleet.controller.dispatch import MAX_WINDOW, MIN_WINDOW, WINDOW_PER_EXECUTOR, Dispatcher
from fleet.controller.options import DispatchOptions
from fleet.state import JobTable
from fleet.state import events as ev


def dispatcher(**settings) -> Dispatcher:
    return Dispatcher(journal=None, options=DispatchOptions.of(Settings(**settings)))


def test_window_is_sized_to_the_workers_when_jobs_are_slow():
    """With no measured rate the window is what it always was: 8 per executor, at least 64."""
    d = dispatcher()
    assert d.window(0, "default") == MIN_WINDOW
    assert d.window(20, "default") == 20 * WINDOW_PER_EXECUTOR


def test_window_grows_with_the_dispatch_rate_up_to_the_cap():
    """A queue dispatching thousands a second gets about 50 ms of work, never past the cap."""
    d = dispatcher()
    d.dispatched_by_queue = {"fast": 5_000, "slow": 1}
    d._measure(1_000)
    assert d.rate_per_s["fast"] == 5_000
    assert d.total_rate_per_s == 5_001  # every queue's: the controller's gather pause reads it
    assert d.window(8, "fast") == 250
    assert d.window(8, "slow") == MIN_WINDOW
    d.dispatched_by_queue["fast"] += 100_000
    d._measure(2_000)
    assert d.window(8, "fast") == MAX_WINDOW


def test_a_configured_window_wins():
    """ready_window set by the operator is used as it is."""
    d = dispatcher(ready_window=10)
    d.dispatched_by_queue = {"fast": 100_000}
    d._measure(1_000)
    assert d.window(8, "fast") == 10


class RecordingJournal:
    """The journal's record/table surface, keeping what was recorded."""

    def __init__(self) -> None:
        self.table = JobTable()
        self.recorded: list[list] = []

    def record(self, record: list) -> bool:
        if self.table.apply(record):
            self.recorded.append(record)
            return True
        return False


def test_fill_logs_a_due_record_before_a_delayed_job_joins_its_line():
    """The dispatcher moves a job whose time came into line only through a logged ``due``
    record, even when the list has no room for it yet; nothing due, no record."""
    journal = RecordingJournal()
    spec = {"q": "default", "f": "tasks:work", "a": [], "k": {}}
    journal.record(ev.enqueued({**spec, "id": "later", "nb": 5_000}, 1_000, 30.0, 2))
    journal.record(ev.enqueued({**spec, "id": "now"}, 1_000, 30.0, 2))
    d = Dispatcher(journal, DispatchOptions.of(Settings(ready_window=1)))
    assert len(d.fill({"default": 0}, 1, 4_999)["default"]) == 1
    assert [record[0] for record in journal.recorded[2:]] == [ev.DISPATCHED]
    assert d.fill({"default": 1}, 1, 5_000) == {}  # full: nothing taken, but "later" is due
    assert journal.recorded[-1] == ev.due(5_000)
    assert len(d.fill({"default": 0}, 1, 5_001)["default"]) == 1
    assert journal.recorded[-1][:2] == [ev.DISPATCHED, "later"]


def test_a_job_found_due_is_taken_in_the_same_fill():
    """The due record comes before the takes: a job whose time came leaves at once."""
    journal = RecordingJournal()
    spec = {"q": "default", "f": "tasks:work", "a": [], "k": {}}
    journal.record(ev.enqueued({**spec, "id": "later", "nb": 5_000}, 1_000, 30.0, 2))
    d = Dispatcher(journal, DispatchOptions.of(Settings(ready_window=4)))
    assert d.fill({"default": 0}, 1, 4_999) == {}
    assert len(d.fill({"default": 0}, 1, 5_000)["default"]) == 1
    assert [record[0] for record in journal.recorded[1:]] == [ev.DUE, ev.DISPATCHED]
