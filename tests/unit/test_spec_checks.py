"""validate_spec's fast paths skip only checks that cannot fail: a job with none of the
workflow or flow fields, or with no null in its encoded arguments. Each skipped check still
runs, and still refuses, when its field is there."""

from __future__ import annotations

import math

import pytest

import fleet.job as job_module
import fleet.names as names
from fleet.errors import JobSpecError
from fleet.job import JobSpec, new_job_id, spec_from_file_entry, validate_spec


def _plain(**extra: object) -> dict[str, object]:
    return {"id": "j1", "f": "m:f", "q": "default", "a": [1.5, "x"], **extra}


def test_a_job_without_kwargs_or_nulls_is_not_walked_for_nan(monkeypatch):
    # An absent kwargs once read as null in the encoded [args, kwargs], so every such job was
    # walked value by value for a NaN that orjson had written as null.
    def walked(value: object) -> bool:
        raise AssertionError(f"walked {value!r}")

    monkeypatch.setattr(job_module, "_has_non_finite", walked)
    assert validate_spec(_plain())["k"] == {}
    assert validate_spec(_plain(a=[]))["a"] == []


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_still_refused_in_args_and_kwargs(value):
    with pytest.raises(JobSpecError, match="NaN or Infinity"):
        validate_spec(_plain(a=[None, [value]]))
    with pytest.raises(JobSpecError, match="NaN or Infinity"):
        validate_spec(_plain(k={"x": {"y": value}}))


def test_a_null_argument_alone_passes():
    assert validate_spec(_plain(a=[None], k={"x": None}))["a"] == [None]


@pytest.mark.parametrize(("extra", "message"), [
    ({"af": True}, "need depends_on"),
    ({"pr": "yes"}, "pass_results must be true or false"),
    ({"dep": []}, "non-empty list"),
    ({"dep": ["j1"]}, "cannot depend on itself"),
    ({"py": 10}, "priority must be an integer 0-9"),
    ({"ky": ""}, "key must be 1-"),
    ({"ex": -1}, "expires_s must be"),
])
def test_workflow_and_flow_fields_are_still_checked_when_present(extra, message):
    with pytest.raises(JobSpecError, match=message):
        validate_spec(_plain(**extra))


def test_a_plain_job_normalises_as_before():
    assert validate_spec(_plain(to=5, mr=0, nb=0)) == {
        "id": "j1", "f": "m:f", "q": "default", "a": [1.5, "x"], "k": {}, "to": 5, "mr": 0}
    flowing = validate_spec(_plain(py=3, ky="k", ex=10, dep=["p"], af=True))
    assert (flowing["py"], flowing["ky"], flowing["ex"]) == (3, "k", 10)
    assert (flowing["dep"], flowing["af"]) == (["p"], True)


def test_job_ids_are_32_hex_digits_and_differ():
    ids = {new_job_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_file_entry_with_an_unknown_field_names_it():
    with pytest.raises(JobSpecError, match="unknown field.*colour"):
        spec_from_file_entry({"func": "m:f", "colour": "red", "args": []})
    assert isinstance(spec_from_file_entry({"func": "m:f"}), JobSpec)


@pytest.mark.parametrize(("field", "value"), [
    ("q", "default\n"), ("f", "m:f\n"), ("q", "\ndefault"), ("f", "m:f\n\n"),
])
def test_a_name_ending_in_a_newline_is_refused(field, value):
    # ``$`` matches before a final newline: "default\n" passed as a queue, whose ready list
    # no worker of "default" reads, and whose name broke every line that printed it.
    validate_spec(_plain(**{field: value.strip()}))  # remembered as good, bare
    with pytest.raises(JobSpecError, match="queue must" if field == "q" else "func must"):
        validate_spec(_plain(**{field: value}))


def test_a_remembered_func_is_not_thereby_a_good_queue():
    validate_spec(_plain(f="tasks:add", q="tasks.add"))
    with pytest.raises(JobSpecError, match="queue must"):
        validate_spec(_plain(q="tasks:add"))
    with pytest.raises(JobSpecError, match="func must"):
        validate_spec(_plain(f="1tasks"))  # a good queue name, not a func
    validate_spec(_plain(q="1tasks"))


@pytest.mark.parametrize("value", [["m:f"], {"m": "f"}, 3, None, b"m:f"])
def test_a_name_of_another_type_is_refused_not_looked_up(value):
    # An unhashable value must not reach the set lookup (a TypeError, not a JobSpecError).
    with pytest.raises(JobSpecError, match="func must"):
        validate_spec(_plain(f=value))
    with pytest.raises(JobSpecError, match="queue must"):
        validate_spec(_plain(q=value))


def test_the_remembered_names_are_bounded():
    for n in range(names._GOOD_NAMES_MAX * 2 + 7):
        validate_spec(_plain(q=f"q{n}", f=f"m:f{n}"))
    assert len(names.GOOD_QUEUES) <= names._GOOD_NAMES_MAX
    assert len(names.GOOD_FUNCS) <= names._GOOD_NAMES_MAX


def test_a_deep_payload_of_few_bytes_is_still_measured():
    # The bracket count is skipped only while the encoded body is too short to hold more
    # brackets than the depth limit: one byte longer, and it counts.
    deep: list[object] = []
    for _ in range(job_module.MAX_JSON_DEPTH + 1):
        deep = [deep]
    with pytest.raises(JobSpecError, match="nested deeper"):
        validate_spec(_plain(a=deep))
    shallow: list[object] = []
    for _ in range(job_module.MAX_JSON_DEPTH - 2):
        shallow = [shallow]
    assert validate_spec(_plain(a=shallow))["a"] == shallow


def test_every_queue_check_refuses_a_final_newline():
    # The pattern is shared: control commands (pause, limits) and configured limits too.
    from fleet.controller.control import ControlError, _queue
    from fleet.errors import ConfigError
    from fleet.flow import check_limits

    assert _queue({"queue": "emails"}) == "emails"
    with pytest.raises(ControlError, match="queue must"):
        _queue({"queue": "emails\n"})
    with pytest.raises(ConfigError, match="queue must"):
        check_limits("emails\n", {"concurrency": 1})


def test_a_log_or_snapshot_with_limits_an_earlier_fleet_accepted_still_opens(tmp_path):
    # The older ``$`` pattern let "emails\n" through `fleet limits set` and the config: its
    # record must still replay, and its snapshot still load, or the controller cannot start.
    from fleet.controller.journal import Journal
    from fleet.state import events as ev
    from fleet.wal import WalOptions, open_log, read_snapshot, write_snapshot

    log = open_log(str(tmp_path), WalOptions())
    journal = Journal(log.table, log.writer)
    journal.record(ev.limits("emails\n", {"concurrency": 2}))
    journal.commit()
    path = write_snapshot(log.table, str(tmp_path / "snap"))
    log.close()
    reopened = open_log(str(tmp_path), WalOptions())
    assert reopened.table.limits == {"emails\n": {"concurrency": 2}}
    assert reopened.table.validate() == []
    reopened.close()
    assert read_snapshot(path).limits == {"emails\n": {"concurrency": 2}}


def test_a_long_func_name_is_not_remembered():
    # A func name has no length limit of its own: kept by a rejected job, 4,096 of them of
    # 64 MiB each would be held by the controller.
    long_name = "m:" + "f" * 100_000
    with pytest.raises(JobSpecError, match="queue must"):
        validate_spec(_plain(f=long_name, q="bad queue"))
    assert validate_spec(_plain(f=long_name))["f"] == long_name
    assert long_name not in names.GOOD_FUNCS


def test_a_str_subclass_is_checked_by_its_pattern_and_never_remembered():
    class Unhashable(str):
        __hash__ = None  # type: ignore[assignment]

    class Liar(str):
        def __hash__(self) -> int:
            return hash("evil\nqueue")

        def __eq__(self, other: object) -> bool:
            return True

    assert validate_spec(_plain(f=Unhashable("m:f")))["f"] == "m:f"
    validate_spec(_plain(q=Liar("good")))
    with pytest.raises(JobSpecError, match="queue must"):
        validate_spec(_plain(q="evil\nqueue"))
    with pytest.raises(JobSpecError, match="queue must"):
        validate_spec(_plain(q=Unhashable("no good")))


def test_a_job_an_earlier_fleet_accepted_on_a_queue_ending_in_a_newline_keeps_its_queue(
        tmp_path):
    # Its record holds the queue in the spec text as an escape; the slice that reads the
    # queue off the text must decode it, in the log, the table and the snapshot alike.
    from fleet.controller.journal import Journal
    from fleet.state import events as ev
    from fleet.state.record import JobRecord
    from fleet.wal import WalOptions, open_log, read_snapshot, write_snapshot

    queue = "emails\n"
    log = open_log(str(tmp_path), WalOptions())
    journal = Journal(log.table, log.writer)
    journal.record(ev.enqueued({"id": "old-1", "q": queue, "f": "m:f", "a": [], "k": {}},
                               5, 30.0, 1))
    journal.record(ev.enqueued({"id": "parent", "q": "default", "f": "m:f", "a": [], "k": {}},
                               5, 30.0, 1))
    journal.record(ev.enqueued_after({"id": "old-2", "q": queue, "f": "m:f", "a": [], "k": {},
                                      "dep": ["parent"]}, 5, 30.0, 1))
    journal.commit()
    path = write_snapshot(log.table, str(tmp_path / "snap"))
    log.close()
    for table in (open_log(str(tmp_path), WalOptions()).table, read_snapshot(path)):
        assert table.queue_counts[queue]["pending"] == 1
        assert table.queue_counts[queue]["waiting"] == 1
        assert table.get("old-1").queue == queue
        assert table.validate() == []
    spec = ev.enqueued({"id": "x", "q": queue, "f": "m:f", "a": [], "k": {}}, 5, 30.0, 1)[4]
    assert JobRecord.from_spec("x", spec).queue == queue
