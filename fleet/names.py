"""The names a job gives: its function and its queue, and the patterns they must match.

Intake, control commands (pause, limits) and configured limits all check a queue here, so a
name is refused or accepted alike wherever it comes from. Anchored with ``\\Z``, not ``$``:
``$`` also matches before a final newline, so ``"default\\n"`` once passed.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

QUEUE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")
# What the ``$`` pattern let in, for queues read back from a log or a snapshot an earlier
# fleet wrote: refusing them there would stop the controller from starting on its own data.
RECORDED_QUEUE_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}\n?\Z")
FUNC_RE = re.compile(r"[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?\Z")

# Functions and queues that passed their pattern: most jobs name one of a few, and a set
# lookup costs a tenth of a match. Bounded in count and in length (names come from whoever
# can write to Redis, and a func name has no length limit of its own), and holding exact
# ``str`` only: a subclass's ``__hash__`` and ``__eq__`` are its own, not to be trusted.
GOOD_FUNCS: set[str] = set()
GOOD_QUEUES: set[str] = set()
_GOOD_NAMES_MAX = 4096
_GOOD_NAME_CHARS = 200


def good_func(name: Any) -> TypeGuard[str]:
    """Whether ``name`` is a function path (``pkg.mod:fn`` or ``pkg.mod.fn``)."""
    return (type(name) is str and name in GOOD_FUNCS) or _matches(name, FUNC_RE, GOOD_FUNCS)


def good_queue(name: Any) -> TypeGuard[str]:
    """Whether ``name`` is a queue name (``[A-Za-z0-9_.-]{1,64}``, the whole of it)."""
    return (type(name) is str and name in GOOD_QUEUES) or _matches(name, QUEUE_RE,
                                                                       GOOD_QUEUES)


def recorded_queue(name: Any) -> TypeGuard[str]:
    """Whether ``name`` is a queue a log or snapshot may hold (``RECORDED_QUEUE_RE``)."""
    return isinstance(name, str) and RECORDED_QUEUE_RE.match(name) is not None


def _matches(name: Any, pattern: re.Pattern[str], good: set[str]) -> bool:
    """Whether ``name`` is text matching ``pattern``; a short exact ``str`` that does is
    remembered in ``good``."""
    if not isinstance(name, str) or not pattern.match(name):
        return False
    if type(name) is str and len(name) <= _GOOD_NAME_CHARS:
        if len(good) >= _GOOD_NAMES_MAX:
            good.clear()
        good.add(name)
    return True
