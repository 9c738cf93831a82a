"""validate_spec's fast paths skip only checks that cannot fail: a job with none of the
workflow or flow fields, or with no null in its encoded arguments. Each skipped check still
runs, and still refuses, when its field is there."""

from __future__ import annotations

import math

import pytest

import fleet.job as job_module
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
