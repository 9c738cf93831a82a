"""Periodic jobs: cron and interval arithmetic, the schedule file, and firing exactly once."""

from __future__ import annotations

import calendar

import pytest

from fleet.config import Settings
from fleet.controller.journal import Journal
from fleet.controller.options import JobDefaults
from fleet.controller.periodic import MAX_CATCH_UP, Scheduler
from fleet.controller.schedule_file import Cron, Schedule, load_schedules
from fleet.errors import ConfigError
from fleet.wal import open_log


def _ms(year, month, day, hour=0, minute=0) -> int:
    return calendar.timegm((year, month, day, hour, minute, 0)) * 1000


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("*/15 * * * *", _ms(2026, 1, 1, 10, 7), _ms(2026, 1, 1, 10, 15)),
    ("0 3 * * *", _ms(2026, 1, 1, 3, 0), _ms(2026, 1, 2, 3, 0)),
    ("30 9 * * 1", _ms(2026, 11, 27), _ms(2026, 11, 30, 9, 30)),  # next Monday
    ("0 0 1,15 * *", _ms(2026, 2, 2), _ms(2026, 2, 15)),
    ("0 12 29 2 *", _ms(2026, 3, 1), _ms(2028, 2, 29, 12)),
    ("0 0 13 * 5", _ms(2026, 11, 27, 1), _ms(2026, 12, 4)),  # day 13 OR a Friday
    ("5-10/5 * * * *", _ms(2026, 1, 1, 0, 6), _ms(2026, 1, 1, 0, 10)),
])
def test_cron_finds_the_next_matching_minute(expr, after, expected):
    """Cron expressions give the first matching minute strictly after a time (UTC)."""
    assert Cron(expr).next_after(after) == expected


@pytest.mark.parametrize("expr", ["* * * *", "60 * * * *", "* 24 * * *", "*/0 * * * *",
                                  "a * * * *"])
def test_bad_cron_expressions_are_refused(expr):
    """Wrong field counts, out-of-range values and garbage raise ValueError."""
    with pytest.raises(ValueError):
        Cron(expr)


def test_intervals_fire_at_multiples_of_the_period():
    """An every_s schedule fires at multiples of its period since the epoch."""
    schedule = Schedule(name="s", func="fleet.demo:noop", every_s=60)
    assert schedule.next_after(_ms(2026, 1, 1, 0, 0) + 1) == _ms(2026, 1, 1, 0, 1)
    assert schedule.job_id(_ms(2026, 1, 1, 0, 1)) == "s@2026-01-01T00:01:00.000Z"


def test_schedule_file_is_read_and_checked(tmp_path):
    """A schedule file gives Schedules; every mistake is a one-line ConfigError."""
    good = tmp_path / "good.yaml"
    good.write_text("- {name: a, func: 'fleet.demo:noop', every_s: 5}\n"
                    "- {name: b, func: 'fleet.demo:noop', cron: '0 * * * *', queue: high}\n")
    assert [s.name for s in load_schedules(str(good))] == ["a", "b"]
    for text, message in [
        ("- {name: a, func: 'm:f'}\n", "exactly one of every_s and cron"),
        ("- {name: a, func: 'm:f', every_s: 0}\n", "every_s must be"),
        # each of these once passed, to stop the controller's scheduler when first due
        ("- {name: a, func: 'm:f', every_s: null}\n", "every_s must be"),
        ("- {name: a, func: 'm:f', every_s: .nan}\n", "every_s must be"),
        ("- {name: a, func: 'm:f', every_s: .inf}\n", "every_s must be"),
        ("- {name: a, func: 'm:f', cron: null}\n", "cron"),
        ("- {name: a, func: 'bad func', every_s: 5}\n", "func must be"),
        ("- {name: a, func: 'm:f', cron: '* *'}\n", "must have 5 fields"),
        ("- {name: a, func: 'm:f', every_s: 5, color: red}\n", "unknown field(s) color"),
        ("- {name: a, func: 'm:f', every_s: 5}\n- {name: a, func: 'm:f', every_s: 6}\n",
         "duplicate name(s) a"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_schedules(str(bad))
        assert message in str(caught.value) and "\n" not in str(caught.value)


def _scheduler(data_dir, schedules):
    log = open_log(str(data_dir))
    return log, Scheduler(Journal(log.table, log.writer), schedules, JobDefaults.of(Settings()))


def test_each_run_is_fired_once_across_a_restart(tmp_path):
    """Runs fired before a restart are not fired again; runs missed meanwhile are fired late."""
    every = [Schedule(name="tick", func="fleet.demo:noop", every_s=1)]
    t0 = _ms(2026, 1, 1)
    log, scheduler = _scheduler(tmp_path, every)
    scheduler.fire_due(t0)  # first sight: the cursor starts now, nothing fires
    assert scheduler.fire_due(t0 + 2500) == 2
    scheduler.journal.commit()
    log.close()
    log, scheduler = _scheduler(tmp_path, every)
    assert scheduler.fire_due(t0 + 2500) == 0
    assert scheduler.fire_due(t0 + 5000) == 3
    ids = sorted(job_id for job_id in log.table.jobs)
    assert ids == [every[0].job_id(t0 + i * 1000) for i in range(1, 6)]
    log.close()


def test_long_outages_fire_a_bounded_catch_up_and_skip_the_rest(tmp_path, caplog):
    """After a very long outage only the last MAX_CATCH_UP runs fire; the skip is logged."""
    every = [Schedule(name="tick", func="fleet.demo:noop", every_s=1)]
    log, scheduler = _scheduler(tmp_path, every)
    scheduler.fire_due(0)
    assert scheduler.fire_due((MAX_CATCH_UP + 50) * 1000) == MAX_CATCH_UP
    assert "skipping 50 missed runs" in caplog.text
    log.close()
