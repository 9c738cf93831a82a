"""``fleet worker --namespaces s0,s1,...``: one worker serving several namespaces
(docs/scaling.md, "Sharded namespaces").

The worker forks one supervisor per namespace and shares ``--count`` executors out among
them (as evenly as they divide; each namespace gets at least one). Each supervisor and its
executors are an ordinary one-namespace worker: they pop from that namespace's ready lists
only, ack and beat there, so no command ever touches two namespaces (each is its own hash
slot on a Redis Cluster) and a big backlog in one namespace cannot starve another: each
has executors of its own. The price is that an idle namespace's executors do not help a busy
one; run more executors, or one worker per namespace, where that matters.

The parent forwards SIGTERM / SIGINT to the supervisors (each in its own process group, so a
Ctrl-C on the terminal reaches them once, through the parent) and exits with the worst of
their exit codes. A supervisor dies with the parent (``PR_SET_PDEATHSIG``), as its executors
die with it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from collections.abc import Sequence
from typing import Any

from ..config import Settings
from ..errors import ConfigError

log = logging.getLogger(__name__)


def shares(executors: int, count: int) -> list[int]:
    """``executors`` shared out among ``count`` namespaces, the first ones getting the rest.

    Raises:
        ConfigError: fewer executors than namespaces.
    """
    if executors < count:
        raise ConfigError(f"--count {executors} is less than the {count} namespaces: each "
                          "namespace needs at least one executor")
    base, rest = divmod(executors, count)
    return [base + (1 if i < rest else 0) for i in range(count)]


def run_namespaces(settings: Settings, namespaces: Sequence[str], burst: bool = False) -> int:
    """Run one supervisor per namespace until all have stopped; the worst exit code."""
    children: dict[int, str] = {}
    for namespace, count in zip(namespaces, shares(settings.executors, len(namespaces)),
                                strict=True):
        one = dataclasses.replace(settings, namespace=namespace, worker_count=count)
        children[_fork_supervisor(one, burst)] = namespace
    log.info("serving namespaces %s: %s", ",".join(namespaces), ", ".join(
        f"{ns} pid {pid}" for pid, ns in children.items()))

    def forward(signum: int, frame: Any) -> None:
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    codes: list[int] = []
    try:
        while children:
            pid, status = os.wait()
            if children.pop(pid, None) is not None:
                codes.append(os.waitstatus_to_exitcode(status))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return max(codes, key=lambda code: (code != 0, abs(code)), default=0)


def _fork_supervisor(settings: Settings, burst: bool) -> int:
    from .entry import die_with_parent
    from .logs import flush_logs
    from .pool import Supervisor

    flush_logs()
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setpgid(0, 0)
        die_with_parent(parent)
        code = Supervisor(settings, burst=burst).run()
    except BaseException as exc:  # noqa: BLE001 - a forked child must reach os._exit
        log.error("supervisor of namespace %r failed: %s", settings.namespace, exc)
    finally:
        flush_logs()
        os._exit(code)
    return 0  # not reached
