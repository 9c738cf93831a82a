"""Job functions for the worker tests (workers run them with ``--allow tests.jobs``)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any


def add(a: int, b: int) -> int:
    """Return a + b."""
    return a + b


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return what it was given."""
    return {"args": list(args), "kwargs": kwargs}


async def async_add(a: int, b: int) -> int:
    """A coroutine function: run with asyncio.run by the worker."""
    await asyncio.sleep(0)
    return a + b


def fail(message: str = "boom") -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


def returns_set() -> set[int]:
    """Return something JSON cannot carry."""
    return {1, 2}


def sleep_s(seconds: float) -> float:
    """Sleep, then return the seconds slept."""
    time.sleep(seconds)
    return seconds


def sleep_forever() -> None:
    """time.sleep(10**6): only a timeout ends it."""
    time.sleep(10**6)


def busy_loop() -> None:
    """A pure-Python busy loop that never returns."""
    n = 0
    while True:
        n += 1


def sleep_with_alarm_blocked() -> None:
    """Block SIGALRM, then sleep: the soft timeout cannot fire, only the hard kill ends it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(10**6)


def write_pid_and_sleep(path: str, seconds: float) -> int:
    """Write this process's pid to ``path`` (atomically), then sleep."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(str(os.getpid()))
    os.replace(tmp, path)
    time.sleep(seconds)
    return os.getpid()


def pid() -> int:
    """The executor's pid."""
    return os.getpid()


class Maths:
    """For the ``module:Class.method`` form."""

    @staticmethod
    def double(x: int) -> int:
        return 2 * x


def fork_and_return(path: str) -> int:
    """Fork; the child writes its pid to ``path`` and returns into the executor's loop."""
    child = os.fork()
    if child == 0:
        write_pid = f"{path}.tmp"
        with open(write_pid, "w", encoding="utf-8") as handle:
            handle.write(str(os.getpid()))
        os.replace(write_pid, path)
        return -1  # the child's "result": it must never reach Redis
    os.waitpid(child, 0)
    return child


def not_a_number(kind: str = "nan") -> list[float]:
    """A result with a float JSON cannot hold (NaN, or Infinity)."""
    return [1.0, float(kind)]


def kill_supervisor() -> None:
    """SIGKILL the process that started this executor (its supervisor), then sleep."""
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(10**6)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def raise_unprintable() -> None:
    """Raise an exception whose str() itself raises."""
    raise _Unprintable()


def raise_surrogate() -> None:
    """Raise with a message holding a lone surrogate (not valid UTF-8)."""
    raise ValueError("bad \udc80 byte")


def close_all_fds() -> str:
    """Close every descriptor above stderr (the executor's Redis socket and Pipe among them)."""
    os.closerange(3, 4096)
    return "closed"


def report_progress(fraction: float, message: str, sleep_s: float) -> str:
    """Report progress once, then work silently for ``sleep_s``."""
    import fleet

    job = fleet.current_job()
    assert job is not None
    job.progress(fraction, message)
    time.sleep(sleep_s)
    return "done"
