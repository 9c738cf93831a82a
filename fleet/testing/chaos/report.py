"""The chaos summary table (Markdown, so it can be pasted into docs/reliability.md)."""

from __future__ import annotations

from collections import Counter

from .faults import FAULT_KINDS, FaultLog
from .runner import ChaosResult

EXAMPLES = 5


def summary_table(result: ChaosResult) -> str:
    """The summary as a Markdown table, followed by examples of anything that went wrong."""
    v, faults = result.verdict, result.faults
    answered, logged = faults.recovery_summary()
    rows = [
        ("seed", str(result.seed)),
        ("jobs enqueued (confirmed durable)", f"{v.enqueued:,} ({result.resends} chunk(s) re-sent "
                                              "after no receipt)"),
        ("completed", f"{v.completed:,}"),
        ("dead (dead-letter set)", f"{v.dead:,}"),
        ("**lost** (must be 0)", str(len(v.lost))),
        ("**in two terminal states** (must be 0)", str(len(v.two_terminal))),
        ("record disagreements: status / job / dead list / WAL (must be 0)",
         str(len(v.disagreements))),
        ("completions whose attempt never ran (must be 0)", str(len(v.phantom))),
        ("**dead without ever having run** (must be 0)", str(len(v.dead_never_ran))),
        ("controller exits nobody caused (must be 0)", str(len(faults.exits))),
        ("ran again after it completed (a start after its successful run ended)",
         f"{len(v.ran_after_completed):,}"),
        ("dead after a successful run (its ack lost)", f"{len(v.dead_after_success):,}"),
        ("failed attempts of record that never started",
         f"{sum(v.failed_unstarted.values()):,}"),
        *[(f"&nbsp;&nbsp;{cause}", f"{count:,}")
          for cause, count in v.failed_unstarted.most_common()],
        ("jobs forgotten by compaction during the run / enqueued twice in the log",
         f"{len(v.forgotten):,} / {len(v.enqueued_twice):,}"),
        ("executions logged", f"{v.executions:,}"),
        ("duplicate executions", f"{v.duplicates:,} (the faults injected could explain up to "
                                 f"{faults.could_explain:,})"),
        *[(f"&nbsp;&nbsp;{cause}", f"{count:,}")
          for cause, count in v.duplicate_causes.most_common()],
        ("same attempt executed twice", str(v.same_attempt_twice)),
        ("stale acks counted (last controller only)", f"{v.stale_acks:,}"),
        ("jobs ending in another state than their kind expects", str(len(v.unexpected))),
        ("faults injected", f"{len(faults.fired)}"),
        *[(f"&nbsp;&nbsp;{kind}", _injected(faults, kind, result.config.faults))
          for kind in FAULT_KINDS if result.config.faults.get(kind) or faults.count(kind)],
        ("controller recovery: answered `status`, max / median ms", answered),
        ("controller recovery: 'recovered in N ms' log line, max / median ms", logged),
        ("wall time", f"{result.elapsed_s:.0f} s"
                      + ("" if result.finished_in_time else " (deadline passed!)")),
        ("verdict", "PASS" if result.ok else "FAIL"),
    ]
    lines = ["| measure | result |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines + _examples(result))


def _injected(faults: FaultLog, kind: str, asked: dict[str, int]) -> str:
    text = f"{faults.count(kind)} of {asked.get(kind, 0)}"
    return text + (" (left out: not available here)" if kind in faults.left_out else "")


def _by_reason(items: list[str]) -> list[str]:
    """``"id: reason"`` lines counted by reason, each with its first id."""
    first: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for item in items:
        job_id, _, reason = item.partition(": ")
        first.setdefault(reason, job_id)
        counts[reason] += 1
    return [f"{count} x {reason} (e.g. {first[reason]})" for reason, count in
            counts.most_common()]


def _examples(result: ChaosResult) -> list[str]:
    v = result.verdict
    out = []
    if v.lost:
        out += [f"\nlost, by what the record and the log say ({len(v.lost)}):"]
        out += [f"  {line}" for line in _by_reason(v.lost)[:EXAMPLES]]
    for title, items in (("two terminal states", v.two_terminal),
                         ("disagreements", v.disagreements), ("never ran", v.phantom),
                         ("dead without ever having run", v.dead_never_ran),
                         ("controller exits", result.faults.exits),
                         ("ran again after it completed", v.ran_after_completed),
                         ("dead after a successful run", v.dead_after_success),
                         ("unexpected outcomes", v.unexpected), ("notes", result.notes)):
        if items:
            out.append(f"\n{title} ({len(items)}):")
            out += [f"  {item}" for item in items[:EXAMPLES]]
    return out


def fault_lines(result: ChaosResult) -> list[str]:
    """One line per injected fault, in order."""
    fired = [f"{fault.at:6.1%}  {fault.kind:<16} {what}" for fault, what in result.faults.fired]
    return fired + [f"{'later':>6}  {kind:<16} {what}" for kind, what in result.faults.later]
