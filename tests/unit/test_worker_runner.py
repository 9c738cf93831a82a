"""Running one job: allow-list, import forms, coroutines, soft timeout, JSON results, signing."""

from __future__ import annotations

import signal
import time

import orjson
import pytest
from rq.timeouts import JobTimeoutException

from fleet.errors import BadMessage, NotAllowed
from fleet.protocol.dispatch import decode_dispatch as parse_message
from fleet.protocol.signing import ACK, DISPATCH, Seal
from fleet.worker.imports import AllowList, resolve, split_func
from fleet.worker.runner import Runner, SoftTimeout, call
from fleet.worker.wire import Identity, error_text
from tests import jobs

# The soft timeout uses SIGALRM, which pytest-timeout's default method uses too.
pytestmark = pytest.mark.timeout(60, method="thread")

IDENTITY = Identity("host-a:42:beef", "host-a")


def make_runner(*allow: str, timeout_s: float = 5.0) -> Runner:
    return Runner(IDENTITY, AllowList(allow or ("tests.jobs",)), timeout_s)


def run(message: dict, runner: Runner | None = None) -> tuple[dict, bool]:
    message = {"id": "job-1", "n": 1, **message}
    raw, ok = (runner or make_runner()).run(message)
    return orjson.loads(raw), ok


def test_allow_list_allows_the_module_and_everything_inside_a_package():
    """"pkg" allows pkg and pkg.mod; "pkg.mod" allows only itself and below."""
    allow = AllowList(["pkg", "other.mod"])
    assert allow.allows("pkg")
    assert allow.allows("pkg.mod.deep")
    assert allow.allows("other.mod")
    assert not allow.allows("other")
    assert not allow.allows("other.module")


def test_allow_list_does_not_match_a_mere_name_prefix():
    """Allowing "pkg" does not allow "pkgx"."""
    assert not AllowList(["pkg"]).allows("pkgx.mod")


def test_fleet_demo_is_always_allowed():
    """An empty allow-list still allows fleet.demo."""
    assert AllowList().allows("fleet.demo")
    ack, ok = run({"f": "fleet.demo:noop"}, make_runner("unrelated"))
    assert ok and ack["o"] == "ok" and ack["r"] is None


def test_split_func_handles_colon_and_dotted_forms():
    """"pkg.mod:fn" and "pkg.mod.fn" both name module pkg.mod and function fn."""
    assert split_func("pkg.mod:fn") == ("pkg.mod", "fn")
    assert split_func("pkg.mod.fn") == ("pkg.mod", "fn")
    assert split_func("pkg.mod:Cls.method") == ("pkg.mod", "Cls.method")


def test_colon_and_dotted_forms_resolve_the_same_function():
    """Both spellings import the same callable."""
    allow = AllowList(["tests.jobs"])
    assert resolve("tests.jobs:add", allow) is jobs.add
    assert resolve("tests.jobs.add", allow) is jobs.add


def test_static_method_path_resolves():
    """"module:Class.method" reaches a static method."""
    ack, ok = run({"f": "tests.jobs:Maths.double", "a": [21]})
    assert ok and ack["r"] == 42


def test_disallowed_module_fails_final_with_a_clear_error():
    """A function outside the allow-list is not imported: fail, fin true, NotAllowed: ...."""
    ack, ok = run({"f": "os:system", "a": ["true"]})
    assert not ok
    assert ack["o"] == "fail" and ack["fin"] is True
    assert ack["e"] == ("NotAllowed: module os is not in the worker's allow-list "
                        "(fleet.demo, tests.jobs)")


def test_path_through_a_module_attribute_is_refused():
    """tests.jobs.os.system would reach os.system through tests.jobs: refused."""
    with pytest.raises(NotAllowed, match="reaches module os"):
        resolve("tests.jobs.os.system", AllowList(["tests.jobs"]))
    with pytest.raises(NotAllowed):
        resolve("tests.jobs:time.sleep", AllowList(["tests.jobs"]))


def test_missing_function_fails_final_naming_module_and_attribute():
    """A name the allowed module lacks (after a reload) is final and says which name."""
    ack, ok = run({"f": "tests.jobs:no_such_function"})
    assert not ok and ack["o"] == "fail" and ack["fin"] is True
    assert ack["e"].startswith("AttributeMissing: tests.jobs (")
    assert "has no attribute 'no_such_function'" in ack["e"]


def test_args_and_kwargs_are_passed():
    """a and k become the positional and keyword arguments."""
    ack, ok = run({"f": "tests.jobs:echo", "a": [1, "x"], "k": {"y": [2]}})
    assert ok and ack["r"] == {"args": [1, "x"], "kwargs": {"y": [2]}}


def test_ok_ack_has_the_protocol_fields():
    """An ok ack carries id, n, o, r, w, h, st and ft."""
    ack, _ = run({"f": "tests.jobs:add", "a": [1, 2]})
    assert set(ack) == {"id", "n", "o", "r", "w", "h", "st", "ft"}
    assert (ack["id"], ack["n"], ack["w"], ack["h"]) == ("job-1", 1, IDENTITY.worker_id, "host-a")
    assert ack["st"] <= ack["ft"]


def test_coroutine_function_is_run_to_completion():
    """An async def job is run with asyncio.run and its value returned."""
    ack, ok = run({"f": "tests.jobs:async_add", "a": [2, 3]})
    assert ok and ack["r"] == 5


def test_exception_becomes_type_colon_message():
    """What the function raises is acked as "Type: message", retryable."""
    ack, ok = run({"f": "tests.jobs:fail", "a": ["no luck"]})
    assert not ok and ack["e"] == "ValueError: no luck" and "fin" not in ack


def test_soft_timeout_raises_rqs_job_timeout_exception():
    """A job past its timeout is interrupted by rq's JobTimeoutException."""
    started = time.monotonic()
    ack, ok = run({"f": "tests.jobs:sleep_s", "a": [10], "to": 0.2})
    assert time.monotonic() - started < 2
    assert not ok and ack["e"].startswith("JobTimeoutException: ")


def test_soft_timeout_interrupts_a_busy_loop():
    """A pure-Python busy loop is interrupted at its timeout."""
    ack, ok = run({"f": "tests.jobs:busy_loop", "to": 0.2})
    assert not ok and ack["e"].startswith("JobTimeoutException")


def test_default_timeout_applies_when_the_message_has_none():
    """Without "to" the worker's task_timeout_s applies."""
    ack, ok = run({"f": "tests.jobs:sleep_s", "a": [10]}, make_runner(timeout_s=0.2))
    assert not ok and "JobTimeoutException" in ack["e"]


def test_soft_timeout_restores_the_previous_sigalrm_handler():
    """After a job, SIGALRM is handled as before and no timer is left running."""
    def before(signum, frame):
        return None

    previous = signal.signal(signal.SIGALRM, before)
    try:
        assert call(jobs.add, [1, 2], {}, 0.5) == 3
        assert signal.getsignal(signal.SIGALRM) is before
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_soft_timeout_message_names_the_timeout():
    """The timeout exception says how long the limit was."""
    with pytest.raises(JobTimeoutException, match=r"\(0.1 seconds\)"), SoftTimeout(0.1):
        time.sleep(5)


def test_non_json_result_fails_with_result_not_json():
    """A result orjson cannot encode is a final failure ResultNotJSON: ...."""
    ack, ok = run({"f": "tests.jobs:returns_set"})
    assert not ok and ack["fin"] is True
    assert ack["e"].startswith("ResultNotJSON: tests.jobs:returns_set returned set")


@pytest.mark.parametrize("fields", [{"f": 42}, {"f": "tests.jobs:add", "a": "1,2"},
                                    {"f": "tests.jobs:add", "k": []},
                                    {"f": "tests.jobs:add", "to": -1},
                                    {"f": "noModule"}])
def test_malformed_fields_fail_final_with_bad_message(fields):
    """Wrong field types are refused before anything is imported."""
    ack, ok = run(fields)
    assert not ok and ack["fin"] is True and ack["e"].startswith("BadMessage: ")


def test_resolve_refuses_something_not_callable():
    """A func naming a non-callable attribute is refused."""
    with pytest.raises(BadMessage):
        resolve("fleet.demo:FAILURE_RATE", AllowList())


def test_sealed_message_opens_and_its_ack_is_sealed_when_keys_are_set():
    """A message sealed with the dispatch key opens to its body; the ack is sealed with the
    worker key and carries the message's enqueue time."""
    dispatch, ack = Seal((b"d",), DISPATCH, "fleet"), Seal((b"w",), ACK, "fleet")
    runner = Runner(IDENTITY, AllowList(("tests.jobs",)), 5.0, dispatch, ack)
    body = orjson.dumps({"id": "j", "n": 1, "f": "tests.jobs:add", "a": [1, 1], "eq": 7})
    message = parse_message(runner.opened(dispatch.seal(body, 1)))
    raw, ok = runner.run(message)
    opened = orjson.loads(ack.open(raw)[1])
    assert ok and opened["r"] == 2 and opened["eq"] == 7


def test_unsealed_or_forged_message_is_dropped_unacked_and_counted():
    """Without a good seal a message is not run and not acked (None), and it is counted; a
    worker without a key says so when it is handed a sealed message."""
    dispatch = Seal((b"d",), DISPATCH, "fleet")
    runner = Runner(IDENTITY, AllowList(("tests.jobs",)), 5.0, dispatch, None)
    body = orjson.dumps({"id": "j", "n": 1, "f": "tests.jobs:add", "a": [1, 1]})
    forged = Seal((b"guess",), DISPATCH, "fleet").seal(body, 1)
    assert [runner.opened(raw) for raw in (body, forged, b"~1.x")] == [None, None, None]
    assert runner.refused == 3
    keyless = make_runner()
    assert keyless.opened(dispatch.seal(body, 1)) is None and keyless.refused == 1
    assert keyless.opened(body) is body


def test_parse_message_drops_non_json_and_messages_without_id_or_n():
    """Only objects with a string id and an integer n are messages."""
    assert parse_message(b"not json") is None
    assert parse_message(b"[1, 2]") is None
    assert parse_message(b'{"id": "a"}') is None
    assert parse_message(b'{"id": "a", "n": true}') is None
    assert parse_message(b'{"id": "a", "n": 1}') == {"id": "a", "n": 1}


def test_error_text_is_one_line_and_bounded():
    """Errors are "Type: message" on one line, cut to a limit."""
    assert error_text(ValueError("a\nb")) == "ValueError: a b"
    assert error_text(KeyError()) == "KeyError"
    assert len(error_text(ValueError("x" * 5000))) == 2000


@pytest.mark.parametrize("func, error", [
    ("tests.jobs:raise_unprintable",
     "_Unprintable: <str() of the exception raised RuntimeError>"),
    ("tests.jobs:raise_surrogate", "ValueError: bad \\udc80 byte"),
])
def test_hostile_exception_still_becomes_a_fail_ack(func, error):
    """An exception whose str() raises, or holds a lone surrogate, cannot stop the executor."""
    ack, ok = run({"f": func})
    assert not ok and ack["o"] == "fail" and ack["e"] == error and "fin" not in ack
    assert ack["tb"].startswith("Traceback")


def test_nan_nested_in_a_result_is_refused_and_null_is_not():
    """NaN deep in a dict fails final; a plain None (also null in JSON) is fine."""
    ack, ok = run({"f": "tests.jobs:echo", "k": {"x": None}})
    assert ok and ack["r"] == {"args": [], "kwargs": {"x": None}}
    ack, ok = run({"f": "tests.jobs:not_a_number", "a": ["nan"]})
    assert not ok and ack["fin"] is True and "NaN or Infinity" in ack["e"]
