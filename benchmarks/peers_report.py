"""The peers benchmark's outputs: the markdown tables, the sections of README.md and
docs/performance.md that a full run regenerates, and a PNG chart (matplotlib, Agg).

Rows come from bench_peers.py, one per system (or fleet variant) and round. A row of kind
``incr`` ran the like-for-like job and is compared; a row of kind ``noop`` (fleet's pure no-op)
is reported in a table of its own and never enters a ratio.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

REFERENCE = "fleet"  # the row every ratio divides by
FILE_ROW = "fleet (`fleet enqueue --file`)"
# Issue 21's targets: like-for-like drain ratios, then fleet's own figures.
DRAIN_TARGETS = (("Huey", 3.0), ("RQ SimpleWorker", 40.0))
NOOP_TARGET_RATE = 25_000.0
SLEEP_TARGET_SHARE = 0.97
P99_TARGET_MS = 2.0


def _rates(rounds: list[dict], key: str, seconds: str) -> list[float] | None:
    """jobs/s of ``key``'s drain in each round; None if a round lacks it."""
    drains = [r.get(key) for r in rounds]
    if any(d is None or d.get(seconds) is None for d in drains):
        return None
    return [d["n"] / d[seconds] for d in drains]


def _spread(name: str, values: list[float] | None) -> dict:
    if values is None:
        return {name: None, name + "_min": None, name + "_max": None}
    return {name: statistics.median(values), name + "_min": min(values),
            name + "_max": max(values)}


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Per row name, in the order first seen: medians and min–max over its rounds.

    Figures a row did not measure (a variant has no 10 ms drain, a peer no own record) are
    None.
    """
    by_name: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_name[run["system"]].append(run)
    out = {}
    for name, rounds in by_name.items():
        jobs = sum(r["drain"]["n"] for r in rounds)
        lat = [r["latency"] for r in rounds if r.get("latency")]
        settled = _rates(rounds, "drain", "settled_s")
        out[name] = {
            "kind": rounds[0]["kind"], "signal": rounds[0]["signal"], "rounds": len(rounds),
            "enqueue": statistics.median(_rates(rounds, "drain", "enqueue_s")),
            **_spread("drain", _rates(rounds, "drain", "total_s")),
            "settled": statistics.median(settled) if settled else None,
            **_spread("sleep", _rates(rounds, "sleep", "total_s")),
            "p50": statistics.median(x["p50_ms"] for x in lat) if lat else None,
            "p99": statistics.median(x["p99_ms"] for x in lat) if lat else None,
            "p99_max": max(x["p99_ms"] for x in lat) if lat else None,
            **{f"{part}_cpu": 1000 * sum(r["drain"][f"{part}_cpu_s"] for r in rounds) / jobs
               for part in ("broker", "worker", "redis")},
        }
    return out


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the divisor is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def ratios(s: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """fleet against each like-for-like peer: throughput as fleet / peer, p99 as peer / fleet.

    ``drain_file`` is fleet's ``fleet enqueue --file`` row against the same peer.
    """
    if REFERENCE not in s:
        return {}
    f, by_file = s[REFERENCE], s.get(FILE_ROW, {})
    return {name: {"enqueue": ratio(f["enqueue"], x["enqueue"]),
                   "drain": ratio(f["drain"], x["drain"]),
                   "drain_file": ratio(by_file.get("drain"), x["drain"]),
                   "sleep": ratio(f["sleep"], x["sleep"]),
                   "p99": ratio(x["p99"], f["p99"])}
            for name, x in s.items() if x["kind"] == "incr" and not name.startswith(REFERENCE)}


def _n(value: float | None, spec: str = ",.0f") -> str:
    return "–" if value is None else format(value, spec)


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _range(x: dict, key: str) -> str:
    if x[key] is None:
        return "–"
    return f"{x[key]:,.0f} ({x[key + '_min']:,.0f}–{x[key + '_max']:,.0f})"


def _latency(x: dict) -> str:
    return "–" if x["p50"] is None else f"{x['p50']:.1f} / {x['p99']:.1f}"


def _cpu(name: str, x: dict) -> str:
    broker = f"{x['broker_cpu']:.3f}" if name.startswith(REFERENCE) else "–"
    return f"{broker} | {x['worker_cpu']:.3f} | {x['redis_cpu']:.3f}"


def like_table(s: dict[str, dict]) -> list[str]:
    """The like-for-like table: every row's job is one INCR, timed to the counter."""
    lines = ["| system | enqueue jobs/s | drain jobs/s (min–max) | own record done, jobs/s | "
             "10 ms drain jobs/s (min–max) | enqueue→start p50 / p99 ms | broker CPU s / 1k "
             "jobs | worker CPU s / 1k | Redis CPU s / 1k |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, x in s.items():
        if x["kind"] == "incr":
            lines.append(f"| {name} | {_n(x['enqueue'])} | {_range(x, 'drain')} | "
                         f"{_n(x['settled'])} | {_range(x, 'sleep')} | {_latency(x)} | "
                         f"{_cpu(name, x)} |")
    return lines


def ratio_table(s: dict[str, dict]) -> list[str]:
    lines = ["| fleet / peer | enqueue | drain (`enqueue_many`) | drain (`enqueue --file`) | "
             "10 ms drain | p99 latency (peer / fleet) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in ratios(s).items():
        lines.append(f"| {name} | {_x(r['enqueue'])} | {_x(r['drain'])} | "
                     f"{_x(r['drain_file'])} | {_x(r['sleep'])} | {_x(r['p99'])} |")
    return lines


def noop_table(s: dict[str, dict]) -> list[str]:
    """fleet alone on a job that touches nothing, timed to fleet's own record."""
    rows = [(name, x) for name, x in s.items() if x["kind"] == "noop"]
    if not rows:
        return []
    lines = ["| fleet alone, not like for like | enqueue jobs/s | pure no-op drain jobs/s "
             "(min–max) | broker CPU s / 1k jobs | worker CPU s / 1k | Redis CPU s / 1k |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, x in rows:
        lines.append(f"| {name} | {_n(x['enqueue'])} | {_range(x, 'drain')} | "
                     f"{_cpu(name, x)} |")
    return lines


def _meta_line(meta: dict) -> str:
    return (f"{meta['started']} – {meta['finished']}; {meta['cpus']} CPUs, Python "
            f"{meta['python']}, Redis {meta['redis']}; load average {meta['load_before']} "
            f"before, {meta['load_after']} after{_steal(meta)}. {meta['jobs']:,} jobs per "
            "drain and "
            f"{meta['jobs'] // 10:,} 10 ms jobs per round, {meta['rounds']} round(s), "
            "interleaved; 8 executors each; fleet with fsync `always`.")


def _steal(meta: dict) -> str:
    """The host's share of this machine's CPU during the run (runs before it was measured
    have none)."""
    if "steal" not in meta:
        return ""
    return (f"; the host took {meta['steal']:.0%} of the CPU time (steal), so every system "
            f"ran on about {meta['cpus'] * (1 - meta['steal']):.1f} of its {meta['cpus']} CPUs")


def tables(s: dict[str, dict]) -> list[str]:
    """The three tables with what each means: the part docs/performance.md quotes."""
    lines = ["Like for like: every system runs the same job, one `INCR` of a Redis counter "
             "(`benchmarks/peer_tasks.py`), on the same redis-server, enqueued at once and timed "
             "until the counter reached N. *Own record done* is when the system's own record "
             "(fleet's log, RQ's registries) counted every job finished; Celery, Huey, Dramatiq "
             "and arq keep none here (arq's job is the asyncio twin of the same body: arq runs "
             "only coroutines).", ""]
    lines += like_table(s) + [""]
    if REFERENCE in s:
        lines += ratio_table(s) + [""]
    noop = noop_table(s)
    if noop:
        lines += ["fleet alone on a job that touches nothing, timed to fleet's own record "
                  "(completed in `fleet status`); no peer ran it, so it is no ratio's "
                  "numerator:", ""] + noop + [""]
    return lines


def targets(s: dict[str, dict], ideal_sleep_rate: float) -> list[str]:
    """Issue 21's targets against this run."""
    if REFERENCE not in s:
        return []
    f, r = s[REFERENCE], ratios(s)
    lines = ["| target (issue 21) | measured | met |", "| --- | ---: | --- |"]
    for peer, factor in DRAIN_TARGETS:
        if peer in r:
            got = r[peer]["drain"]
            lines.append(f"| like-for-like drain ≥ {factor:g}× {peer} | {_x(got)} | "
                         f"{_yes(got is not None and got >= factor)} |")
    for x in s.values():
        if x["kind"] == "noop":
            lines.append(f"| pure no-op drain ≥ {NOOP_TARGET_RATE:,.0f} jobs/s | "
                         f"{x['drain']:,.0f} | {_yes(x['drain'] >= NOOP_TARGET_RATE)} |")
    if f["sleep"] is not None:
        share = f["sleep"] / ideal_sleep_rate
        lines.append(f"| 10 ms jobs ≥ {SLEEP_TARGET_SHARE:.0%} of {ideal_sleep_rate:.0f}/s | "
                     f"{share:.1%} | {_yes(share >= SLEEP_TARGET_SHARE)} |")
    if f["p99"] is not None:
        lines.append(f"| p99 enqueue→start ≤ {P99_TARGET_MS:g} ms at light load | "
                     f"{f['p99']:.1f} ms (worst round {f['p99_max']:.1f}) | "
                     f"{_yes(f['p99'] <= P99_TARGET_MS)} |")
    return lines


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def write_markdown(meta: dict, runs: list[dict], ideal_sleep_rate: float) -> str:
    s = summarise(runs)
    lines = ["# fleet against its peers", "",
             _meta_line(meta) + " Generated by `benchmarks/bench_peers.py` "
             "(docs/performance.md).", ""]
    lines += tables(s)
    lines += ["CPU is from /proc/<pid>/stat around each row's drain (broker: the fleet "
              "controller; the peers have no broker process besides Redis; the benchmark's and "
              "`fleet enqueue`'s own CPU is not counted).", ""]
    target_lines = targets(s, ideal_sleep_rate)
    if target_lines:
        lines += ["## Targets", ""] + target_lines + [""]
    return "\n".join(lines)


def readme_table(meta: dict, runs: list[dict]) -> str:
    """The README's performance table: like-for-like rows, then fleet's pure no-op apart."""
    s = summarise(runs)
    r = ratios(s)
    lines = ["| system | enqueue jobs/s | drain jobs/s, each job one INCR | 10 ms jobs/s | "
             "enqueue→start p50 / p99 | fleet / peer, drain |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, x in s.items():
        if x["kind"] != "incr":
            continue
        p = "–" if x["p50"] is None else f"{x['p50']:.1f} / {x['p99']:.1f} ms"
        mark = "1×" if name == REFERENCE else _x(r.get(name, {}).get("drain"))
        lines.append(f"| {name} | {_n(x['enqueue'])} | {_range(x, 'drain')} | "
                     f"{_n(x['sleep'])} | {p} | {mark} |")
    for name, x in s.items():
        if x["kind"] == "noop":
            lines += ["", f"Not like for like, fleet alone: {name} (a job that touches "
                      f"nothing, timed to fleet's own record) drained {_range(x, 'drain')} "
                      "jobs/s."]
    lines += ["", f"From `benchmarks/results/peers.md`: {_meta_line(meta)}"]
    return "\n".join(lines)


def update_section(text: str, name: str, body: str) -> str:
    """Replace what lies between ``<!-- name:begin -->`` and ``<!-- name:end -->``.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    head, found, rest = text.partition(begin)
    _, found_end, tail = rest.partition(end)
    if not found or not found_end:
        raise ValueError(f"no {begin} … {end} section")
    return f"{head}{begin}\n{body.strip()}\n{end}{tail}"


def _label(name: str) -> str:
    return name.replace("`", "").replace("(fleet enqueue", "(enqueue").replace(" (", "\n(")


def write_chart(runs: list[dict], path: str, meta: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = {n: x for n, x in summarise(runs).items() if x["kind"] == "incr"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, key, title in ((axes[0], "drain", "each job one INCR: drain rate (jobs/s)"),
                           (axes[1], "sleep", "10 ms + INCR jobs: drain rate (jobs/s)")):
        names = [n for n in s if s[n][key] is not None]
        values = [s[n][key] for n in names]
        errors = [[s[n][key] - s[n][key + "_min"] for n in names],
                  [s[n][key + "_max"] - s[n][key] for n in names]]
        bars = ax.bar([_label(n) for n in names], values, yerr=errors, capsize=4,
                      color=["tab:green" if n.startswith(REFERENCE) else "tab:gray"
                             for n in names])
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=8)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=25, labelsize=8)
    names = [n for n in s if s[n]["p50"] is not None]
    x = range(len(names))
    axes[2].bar([i - 0.2 for i in x], [s[n]["p50"] for n in names], 0.4, label="p50")
    axes[2].bar([i + 0.2 for i in x], [s[n]["p99"] for n in names], 0.4, label="p99")
    axes[2].set_xticks(list(x), names, rotation=25)
    axes[2].set_yscale("log")
    axes[2].set_title(f"enqueue→start at {meta['rate']:.0f} jobs/s (ms, log)")
    axes[2].legend()
    fig.suptitle(f"fleet vs peers, like for like — 8 executors, {meta['cpus']} CPUs, "
                 f"{meta['jobs']:,} jobs, load {meta['load_before']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
