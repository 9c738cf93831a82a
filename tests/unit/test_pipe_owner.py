"""Only the process that made a Pipe may use it: a child forked from it (a job's fork
returning into the executor loop) exits at its first command, as do its own children, while
a Pipe the child makes for itself is the child's. Told by the forks the process went through
(``os.register_at_fork``), not by ``os.getpid()``, a system call an executor made several
times a job."""

from __future__ import annotations

import os

import redis

from fleet.transport.pipe import FORKED_CHILD_EXIT, Pipe


def _pipe() -> Pipe:
    return Pipe(redis.Redis(host="127.0.0.1", port=1))  # never connects: no command is sent


def _in_child(body) -> int:
    """Run ``body`` in a forked child; its exit code (0 when it returns)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            body()
        except BaseException:  # noqa: BLE001 - anything else is a failure of the child
            code = 3
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_the_maker_owns_its_pipe():
    pipe = _pipe()
    assert pipe.owned()
    pipe.check_owner()  # returns


def test_a_forked_child_exits_at_the_check_and_so_does_its_child():
    pipe = _pipe()
    assert _in_child(pipe.check_owner) == FORKED_CHILD_EXIT

    def child() -> None:
        grandchild = _in_child(pipe.check_owner)
        os._exit(0 if grandchild == FORKED_CHILD_EXIT and not pipe.owned() else 4)

    assert _in_child(child) == 0
    assert pipe.owned()  # the parent's count did not move


def test_a_pipe_made_in_the_child_is_the_childs():
    def body() -> None:
        mine = _pipe()
        mine.check_owner()
        assert mine.owned()

    assert _in_child(body) == 0


def test_a_child_leaves_its_parents_connection_alone():
    pipe = _pipe()
    closed: list[bool] = []
    pipe.connection.disconnect = lambda: closed.append(True)  # type: ignore[method-assign]
    assert _in_child(lambda: (pipe.reset(), os._exit(0 if not closed else 5))) == 0
    pipe.reset()
    assert closed == [True]
