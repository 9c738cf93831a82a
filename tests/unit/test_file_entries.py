"""A job-file entry goes straight to its wire form (``file_entry_wire``), checked once. It
must give exactly what the JobSpec route gave (the entry as a JobSpec, then ``to_wire``)
for every entry, good or bad, and refuse the same ones."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.errors import JobSpecError
from fleet.job import DEFAULT_FUNC, DEFAULT_QUEUE, JobSpec, file_entry_wire, validate_spec
from fleet.specs import checked_wire, unique_ids

# Values of every kind a JSON file (or a Python caller) can put in a field: the right type,
# the wrong one, empty, zero, false and null.
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(-5, 5), st.sampled_from(
        ["", "m:f", "q1", "x y", "k"]),
    st.lists(st.one_of(st.integers(0, 3), st.sampled_from(["p1", "p2", ""])), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 3), max_size=2))
# Good values of each field. Half the entries hold only good ones (most pass); in the other
# half each field may hold anything.
GOOD = {"func": ["m:f", "pkg.mod:fn"], "args": [[], [1, "x"]], "kwargs": [{}, {"n": 1}],
        "payload": [{"n": 2}], "queue": ["default", "q1"], "timeout": [1, 2.5],
        "max_retries": [0, 3], "run_at_ms": [0, 1_700_000_000_000],
        "depends_on": [[], ["p1"], ["p1", "p2"], ("p3",)], "allow_failure": [False, True],
        "pass_results": [False, True], "key": ["k"], "priority": [0, 5, 9],
        "expires_s": [10, 1.5]}
ENTRIES = st.one_of(
    st.fixed_dictionaries({"id": st.just("j1")},
                          optional={name: st.sampled_from(good) for name, good in GOOD.items()
                                    if name != "payload"}),
    st.fixed_dictionaries({"id": st.sampled_from(["j1", "j 2", ""])},
                          optional={name: st.one_of(st.sampled_from(good), ANY_VALUE)
                                    for name, good in GOOD.items()}))


def spec_route(entry: dict[str, Any]) -> dict[str, Any]:
    """The wire form as it was made before ``file_entry_wire``: the entry's fields as a
    JobSpec, then ``to_wire``, then ``validate_spec``."""
    if "payload" in entry and "kwargs" in entry:
        raise JobSpecError("give either payload or kwargs, not both")
    parents = entry.get("depends_on", ())
    if not isinstance(parents, list | tuple):
        raise JobSpecError("depends_on must be a list of job ids")
    spec = JobSpec(
        id=entry["id"], func=entry.get("func", DEFAULT_FUNC), args=entry.get("args", []),
        kwargs=entry.get("kwargs", entry.get("payload", {})),
        queue=entry.get("queue", DEFAULT_QUEUE), timeout_s=entry.get("timeout"),
        max_retries=entry.get("max_retries"), run_at_ms=entry.get("run_at_ms", 0),
        depends_on=tuple(parents), allow_failure=entry.get("allow_failure", False),
        pass_results=entry.get("pass_results", False), key=entry.get("key"),
        priority=entry.get("priority", 0), expires_s=entry.get("expires_s"))
    wire = spec.to_wire()
    validate_spec(wire)
    return wire


def checked_route(entry: dict[str, Any]) -> dict[str, Any]:
    """What ``checked_wire`` made of a plain dict before: ``spec_route``, then a check that
    the whole wire form encodes."""
    wire = spec_route(entry)
    try:
        orjson.dumps(wire)
    except TypeError:
        raise JobSpecError("arguments must be JSON") from None
    return wire


def outcome(make: Any, entry: dict[str, Any]) -> Any:
    try:
        return make(entry)
    except JobSpecError:
        return "refused"


@settings(max_examples=3000, deadline=None)
@given(ENTRIES)
def test_an_entry_gives_the_wire_form_the_jobspec_route_gave(entry):
    assert outcome(file_entry_wire, entry) == outcome(spec_route, entry)


@settings(max_examples=500, deadline=None)
@given(ENTRIES)
def test_a_checked_entry_round_trips_through_a_jobspec(entry):
    try:
        wire = file_entry_wire(entry)
    except JobSpecError:
        return
    assert JobSpec.from_wire(wire).to_wire() == wire
    assert checked_wire(dict(entry)) == wire  # enqueue_many's plain dicts: the same form


@pytest.mark.parametrize("field, value", [("run_at_ms", 2**70), ("max_retries", 2**64),
                                          ("timeout", float("nan"))])
def test_a_dict_from_python_whose_field_cannot_be_encoded_is_refused_before_sending(
        field, value):
    """A plain dict given to ``enqueue_many`` can hold what no JSON file can (an integer past
    64 bits): refused with a one-line JobSpecError, as before, not a TypeError mid-send."""
    entry = {"id": "j1", "func": "m:f", field: value}
    assert outcome(checked_wire, entry) == outcome(checked_route, entry) == "refused"


@pytest.mark.parametrize("parents", [0, None, {}, "p1", False])
def test_depends_on_that_is_not_a_list_is_refused_even_when_empty_or_null(parents):
    with pytest.raises(JobSpecError, match="depends_on must be a list"):
        file_entry_wire({"func": "m:f", "depends_on": parents})


def test_an_entry_without_an_id_gets_a_new_one_and_payload_is_its_kwargs():
    first, second = (file_entry_wire({"payload": {"n": 1}}) for _ in range(2))
    assert first["id"] != second["id"] and len(first["id"]) == 32
    assert (first["f"], first["k"]) == (DEFAULT_FUNC, {"n": 1})


def test_the_entry_is_not_changed_by_being_read():
    entry = {"id": "j1", "payload": {"n": 1}, "depends_on": ("p1",)}
    file_entry_wire(entry)
    assert entry == {"id": "j1", "payload": {"n": 1}, "depends_on": ("p1",)}


def test_a_repeated_id_is_named():
    unique_ids(["a", "b"])
    with pytest.raises(JobSpecError, match="'b' appears more than once"):
        unique_ids(["a", "b", "c", "b"])
