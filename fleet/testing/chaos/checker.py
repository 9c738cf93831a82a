"""The independent checker: what was enqueued, what really ran, and what the controller says.

Three sources, none trusted to agree with another:

1. **the runner's own list** of jobs the controller confirmed durable (accepted / duplicate);
2. **the execution log** the job functions appended to (``"<id> <attempt> <pid>"`` lines);
3. **the controller's record**: ``fleet status --json``, one job lookup per job (the Client
   API, spot-checked against ``fleet job ID --json``), ``fleet dead list --json``, and the
   whole log from ``fleet wal dump``, folded here with rules of the checker's own (not the
   controller's job table).

A job is **lost** when it was confirmed but the record does not show it finished (unknown,
pending or in flight at the end, or no terminal event in the log). Duplicate executions are
executions whose attempt did not produce the outcome of record; each is put down to what the
record says ended that attempt (lease expired, executor died, healed re-dispatch, ...).

A job is **dead without ever having run** when the record says dead and the execution log has
no start of any attempt of it: fleet charged failures to attempts that never reached a worker
(a lost message). Both verdicts fail the run, as does a job the log finishes twice (one that
was forgotten and then accepted again counts). **Ran again after it completed** counts
executions that started after the job's successful execution had logged its end (its ``done``
line); at-least-once allows them, so they are reported, not failed, unless the record is wrong.
**Failed attempts that never started** are failures of record for an attempt with no start in
the execution log (informational: an executor killed before the function ran is one too).
**Dead after a successful run** (informational) is a job the record says dead although one of
its executions ran to its end: its ack was lost and the lapsed lease charged as a failure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("completed", "dead", "cancelled")
# Errors the workload's own functions raise: their executions are the outcome of record.
JOB_ERRORS = ("RuntimeError", "ValueError")


@dataclass
class Folded:
    """One job as the checker reads it from the log."""

    state: str = "pending"
    max_retries: int = 0
    failures: int = 0
    terminal: int = 0
    acked: int | None = None
    outcomes: dict[int, str] = field(default_factory=dict)
    enqueued: int = 1
    compacted: bool = False
    ended: str | None = None


def fold_log(events: list[dict[str, Any]]) -> tuple[dict[str, Folded], list[str]]:
    """Per-job state from the log's events; also problems with the log itself."""
    jobs: dict[str, Folded] = {}
    problems = []
    expected_seq = events[0].get("s", 1) if events else 1
    if expected_seq != 1:
        problems.append(f"the log starts at seq {expected_seq}: earlier records were pruned")
    for event in events:
        if event.get("s") != expected_seq:
            problems.append(f"seq {event.get('s')} where {expected_seq} was expected")
        expected_seq = event.get("s", expected_seq) + 1
        _fold(jobs, event)
    return jobs, problems


def _fold(jobs: dict[str, Folded], e: dict[str, Any]) -> None:
    kind = e.get("t")
    if kind in ("enq", "compact"):
        _fold_table(jobs, e)
        return
    job = jobs.get(e.get("id", ""))  # no job has the empty id
    if job is None:
        return
    if kind == "disp":
        job.state = "in_flight"
    elif kind == "ack":
        job.outcomes[e["n"]] = "ok"
        job.acked = e["n"]
        _end(job, "completed")
    elif kind in ("fail", "exp"):
        error = str(e.get("e", "")).split(":")[0] if kind == "fail" else ""
        job.outcomes[e["n"]] = f"fail:{error}" if kind == "fail" else "exp"
        job.failures += 1
        if e.get("fin") or job.failures > job.max_retries:
            _end(job, "dead")
        else:
            job.state = "pending"
    elif kind == "rel":
        job.outcomes[e["n"]] = "rel"
        job.state = "pending"
    elif kind == "retry":
        job.failures, job.state = 0, "pending"
    elif kind == "cancel":
        _end(job, "cancelled")


def _fold_table(jobs: dict[str, Folded], e: dict[str, Any]) -> None:
    if e["t"] == "enq":
        old = jobs.get(e["id"])
        jobs[e["id"]] = Folded(max_retries=e["mr"])
        if old is not None:  # forgotten, then accepted again: its ends still count
            jobs[e["id"]].terminal, jobs[e["id"]].enqueued = old.terminal, old.enqueued + 1
        return
    for job_id in e.get("ids", ()):
        if job_id in jobs and jobs[job_id].state in TERMINAL:
            jobs[job_id].compacted, jobs[job_id].state = True, "forgotten"


def _end(job: Folded, state: str) -> None:
    job.state = job.ended = state
    job.terminal += 1


def read_executions(path: str) -> list[tuple[str, int, int]]:
    """``(job id, attempt, pid)`` for every line of the execution log."""
    out = []
    try:
        with open(path) as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 3:
                    out.append((parts[0], int(parts[1]), int(parts[2])))
    except FileNotFoundError:
        pass
    return out


def read_timeline(path: str) -> list[tuple[str, int, bool]]:
    """``(job id, attempt, is the end of a successful run)`` for every line, in log order."""
    out = []
    try:
        with open(path) as handle:
            for line in handle:
                parts = line.split()
                if len(parts) in (3, 4):
                    out.append((parts[0], int(parts[1]), len(parts) == 4))
    except FileNotFoundError:
        pass
    return out


@dataclass
class Inputs:
    """Everything the checker compares."""

    kinds: dict[str, str]
    expected: dict[str, str]
    confirmed: set[str]
    executions: list[tuple[str, int, int]]
    status: dict[str, Any]
    dead_list: list[dict[str, Any]]
    lookups: dict[str, dict[str, Any] | None]
    cli_lookups: dict[str, dict[str, Any]]
    events: list[dict[str, Any]]
    timeline: list[tuple[str, int, bool]] = field(default_factory=list)


@dataclass
class Verdict:
    """What the checker found. ``ok`` is False on any loss or inconsistency of the record."""

    enqueued: int = 0
    completed: int = 0
    dead: int = 0
    lost: list[str] = field(default_factory=list)
    two_terminal: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    phantom: list[str] = field(default_factory=list)
    unknown_executions: int = 0
    unexpected: list[str] = field(default_factory=list)
    executions: int = 0
    duplicates: int = 0
    duplicate_causes: Counter[str] = field(default_factory=Counter)
    same_attempt_twice: int = 0
    stale_acks: int = 0
    dead_never_ran: list[str] = field(default_factory=list)
    ran_after_completed: list[str] = field(default_factory=list)
    failed_unstarted: Counter[str] = field(default_factory=Counter)
    forgotten: list[str] = field(default_factory=list)
    enqueued_twice: list[str] = field(default_factory=list)
    dead_after_success: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.two_terminal or self.disagreements or self.phantom
                    or self.unknown_executions or self.dead_never_ran)


def check(inputs: Inputs) -> Verdict:
    """Compare the three sources; see the module docstring for the rules."""
    verdict = Verdict(enqueued=len(inputs.confirmed), executions=len(inputs.executions),
                      stale_acks=int(inputs.status.get("stale_acks") or 0))
    folded, problems = fold_log(inputs.events)
    verdict.disagreements += [f"log: {p}" for p in problems]
    ran = Counter((job_id, n) for job_id, n, _ in inputs.executions)
    started = {job_id for job_id, _, _ in inputs.executions}
    for job_id in sorted(inputs.confirmed):
        _check_job(verdict, job_id, folded.get(job_id), inputs, ran, started)
    _check_totals(verdict, folded, inputs)
    _count_duplicates(verdict, folded, ran)
    _check_runs(verdict, folded, inputs.timeline, ran, started)
    verdict.unknown_executions = sum(c for (job_id, _), c in ran.items()
                                     if job_id not in inputs.kinds)
    return verdict


def _check_job(verdict: Verdict, job_id: str, job: Folded | None, inputs: Inputs,
               ran: Counter[tuple[str, int]], started: set[str]) -> None:
    info = inputs.lookups.get(job_id) or {}
    state = info.get("state")
    if job is None or state not in TERMINAL or job.state not in TERMINAL:
        forgotten = " by compaction (retention)" if job and job.compacted else ""
        verdict.lost.append(f"{job_id}: record {state or 'unknown'}, log "
                            f"{job.state if job else 'no enqueue record'}{forgotten}")
        return
    if job.terminal > 1:
        verdict.two_terminal.append(job_id)
    if state != job.state:
        verdict.disagreements.append(f"{job_id}: job lookup {state}, log {job.state}")
    cli = inputs.cli_lookups.get(job_id)
    if cli is not None and (cli.get("state"), cli.get("attempt")) != (state, info["attempt"]):
        verdict.disagreements.append(f"{job_id}: fleet job --json disagrees with the API")
    if state == "completed":
        verdict.completed += 1
        if job.acked is None or not ran.get((job_id, job.acked)):
            verdict.phantom.append(f"{job_id}: attempt {job.acked} completed, never ran")
    elif state == "dead":
        verdict.dead += 1
        if job_id not in started:
            verdict.dead_never_ran.append(f"{job_id}: dead after {job.failures} failure(s) "
                                          f"({', '.join(job.outcomes.values())}), no start "
                                          "in the execution log")
    if state != inputs.expected.get(inputs.kinds.get(job_id, ""), state):
        verdict.unexpected.append(f"{job_id}: {state}: {info.get('error')}")


def _check_totals(verdict: Verdict, folded: dict[str, Folded], inputs: Inputs) -> None:
    states = inputs.status.get("states", {})
    for name in TERMINAL:
        from_log = sum(1 for job in folded.values() if job.state == name)
        if states.get(name) != from_log:
            verdict.disagreements.append(f"status says {states.get(name)} {name}, the log "
                                         f"{from_log}")
    dead_ids = {entry["id"] for entry in inputs.dead_list}
    dead_in_log = {job_id for job_id, job in folded.items() if job.state == "dead"}
    if dead_ids != dead_in_log:
        verdict.disagreements.append(f"dead list has {len(dead_ids)} ids, the log "
                                     f"{len(dead_in_log)} (differing: "
                                     f"{sorted(dead_ids ^ dead_in_log)[:5]})")
    extra = set(folded) - inputs.confirmed
    if extra:
        verdict.disagreements.append(f"{len(extra)} jobs in the log were never confirmed to "
                                     f"the runner, e.g. {sorted(extra)[:3]}")


def _count_duplicates(verdict: Verdict, folded: dict[str, Folded], ran: Counter[tuple[str, int]]
                      ) -> None:
    for (job_id, attempt), count in ran.items():
        job = folded.get(job_id)
        outcome = job.outcomes.get(attempt) if job else None
        verdict.same_attempt_twice += count - 1
        useful = outcome == "ok" or (outcome or "").split(":")[-1] in JOB_ERRORS
        wasted = count - 1 if useful else count
        if wasted:
            verdict.duplicates += wasted
            verdict.duplicate_causes[_cause(outcome, useful)] += wasted


def _cause(outcome: str | None, useful: bool) -> str:
    if useful:
        return "same attempt ran twice"
    if outcome is None:
        return "attempt without an outcome (healed re-dispatch, or overtaken by a late ack)"
    if outcome == "exp":
        return "lease expired (stalled or killed worker)"
    if outcome == "rel":
        return "handed back"
    return f"attempt ended {outcome.removeprefix('fail:')}"


def _check_runs(verdict: Verdict, folded: dict[str, Folded], timeline: list[tuple[str, int, bool]],
                ran: Counter[tuple[str, int]], started: set[str]) -> None:
    """Runs after the successful one ended; failures charged to attempts that never started."""
    done_at: dict[str, int] = {}
    for job_id, job in folded.items():
        verdict.forgotten += [job_id] if job.compacted else []
        if job.compacted and job.ended == "dead" and job_id not in started:
            verdict.dead_never_ran.append(f"{job_id}: dead (then forgotten) after "
                                          f"{', '.join(job.outcomes.values())}, no start in "
                                          "the execution log")
        verdict.enqueued_twice += [job_id] if job.enqueued > 1 else []
        for attempt, outcome in job.outcomes.items():
            if outcome not in ("ok", "rel") and not ran.get((job_id, attempt)):
                verdict.failed_unstarted[outcome.removeprefix("fail:")] += 1
    for job_id, attempt, is_done in timeline:
        logged = folded.get(job_id)
        if is_done and logged is not None and logged.ended == "dead":
            verdict.dead_after_success.append(f"{job_id}: attempt {attempt} ran to its end, "
                                              f"the record says dead ({logged.outcomes})")
        if is_done:
            if logged is not None and logged.acked == attempt:
                done_at.setdefault(job_id, attempt)
        elif job_id in done_at:
            verdict.ran_after_completed.append(f"{job_id}: attempt {attempt} started after "
                                               f"attempt {done_at[job_id]} had completed")
