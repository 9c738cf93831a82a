"""The faults the chaos runner can inject, their default counts, and the seeded schedule.

Each fault fires when the share of finished jobs passes its threshold, drawn once from the
seed, so a run is repeatable in *what* happens at *which stage* however fast the machine is.
``injector.py`` carries them out.

================  =====  ==============================================================
fault             runs   what it does
================  =====  ==============================================================
kill-controller   3      SIGKILL the controller, start a new one at once, time its recovery
kill-supervisor   2      SIGKILL a worker's whole process group, start a replacement
kill-executor     10     SIGKILL one executor; its supervisor acks ExecutorDied, replaces it
restart-redis     1      SIGKILL redis-server and start it again, empty, on the same port
stall-worker      1      SIGSTOP a worker's group past its leases, then SIGCONT
stop-controller   1      SIGSTOP the controller past its own lease (5 s) by 2 s, then SIGCONT
del-ready         2      DEL every ready list (the messages waiting for a worker vanish)
del-acks          1      DEL the acks list (outcomes not yet read by the controller vanish),
                         after pausing the controller 1 s so that acks pile up
rollback-redis    1      SAVE, 2 s later DEBUG RELOAD NOSAVE: Redis goes back in time
oom               1      maxmemory just under used_memory, noeviction, for 5 s
clock-step        2      the controller's wall clock 1 h back (the 2nd: 1 h forward) for
                         10 s, then true again (libfaketime; left out if not installed)
================  =====  ==============================================================

A stalled worker's heartbeat key outlives it by ``WORKER_TTL_S`` and keeps its leases
extended that long, so a stall lasts ``WORKER_TTL_S + lease_s + 1`` seconds.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from ...errors import ConfigError

DEFAULT_COUNTS = {"kill-controller": 3, "kill-supervisor": 2, "kill-executor": 10,
                  "restart-redis": 1, "stall-worker": 1, "stop-controller": 1, "del-ready": 2,
                  "del-acks": 1, "rollback-redis": 1, "oom": 1, "clock-step": 2}
FAULT_KINDS = tuple(DEFAULT_COUNTS)


def parse_faults(text: str) -> dict[str, int]:
    """``"kill-controller=2,del-ready"`` -> counts (a kind without ``=N`` gets its default).

    ``all`` stands for every kind at its default count; ``none`` for no fault at all.

    Raises:
        ConfigError: an unknown kind or a count that is not a whole number >= 0.
    """
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, number = item.partition("=")
        if kind in ("all", "none") and not number:
            counts.update(DEFAULT_COUNTS if kind == "all" else {})
            continue
        if kind not in DEFAULT_COUNTS:
            raise ConfigError(f"unknown fault {kind!r}; the faults are: "
                              f"{', '.join(FAULT_KINDS)}")
        if number and not number.isdigit():
            raise ConfigError(f"fault {kind}: count {number!r} is not a whole number >= 0")
        counts[kind] = int(number) if number else DEFAULT_COUNTS[kind]
    return counts


@dataclass(frozen=True)
class Fault:
    """One scheduled fault: fire when ``at`` of the jobs are finished; ``pick`` chooses
    the victim among the candidates at that time."""

    kind: str
    at: float
    pick: float


def schedule(counts: dict[str, int], rng: random.Random, start: float = 0.05,
             end: float = 0.85) -> list[Fault]:
    """Faults from ``counts`` (kind -> how many), at seeded progress points, in order."""
    faults = [Fault(kind, round(rng.uniform(start, end), 4), rng.random())
              for kind in FAULT_KINDS for _ in range(counts.get(kind, 0))]
    return sorted(faults, key=lambda fault: fault.at)


@dataclass
class Restart:
    """One controller restart: how long until it answered, and what its log said."""

    answered_ms: float
    logged_ms: int | None


@dataclass
class FaultLog:
    """What was injected, what it led to, and how many duplicate executions it could explain.

    ``exits`` are controller exits nobody caused (the runner started a new controller each
    time); ``left_out`` the kinds that could not be injected on this machine, with why.
    """

    fired: list[tuple[Fault, str]] = field(default_factory=list)
    later: list[tuple[str, str]] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    exits: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    could_explain: int = 0

    def count(self, kind: str) -> int:
        return sum(1 for fault, _ in self.fired if fault.kind == kind)

    def recovery_summary(self) -> tuple[str, str]:
        """``(answered, logged)`` as "max / median ms" strings."""
        answered = [r.answered_ms for r in self.restarts]
        logged = [r.logged_ms for r in self.restarts if r.logged_ms is not None]
        return _max_median(answered), _max_median(logged)


def _max_median(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{max(values):.0f} / {statistics.median(values):.0f}"
