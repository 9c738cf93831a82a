"""benchmarks/peers_report.py: the figures `make bench` publishes, from made-up rows."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import peers_report  # noqa: E402
from peers_report import (  # noqa: E402
    FILE_ROW,
    like_table,
    noop_table,
    ratios,
    readme_table,
    summarise,
    update_section,
)

META = {"started": "2026-12-01 10:00:00", "finished": "2026-12-01 10:15:00", "cpus": 2,
        "python": "3.11", "redis": "7.0", "load_before": "0.50", "load_after": "0.60",
        "jobs": 1000, "rounds": 1, "rate": 200.0}


def _drain(rate: float, n: int = 1000, settled_rate: float | None = None) -> dict:
    return {"n": n, "enqueue_s": n / (rate * 4), "total_s": n / rate,
            "settled_s": n / settled_rate if settled_rate else None,
            "broker_cpu_s": 0.04, "worker_cpu_s": 0.06, "redis_cpu_s": 0.02}


def _row(system: str, rate: float, kind: str = "incr", round_no: int = 1,
         sleep: float | None = 700.0, p99_ms: float | None = 2.0,
         settled_rate: float | None = None) -> dict:
    row = {"system": system, "kind": kind, "round": round_no,
           "signal": "record" if kind == "noop" else "counter",
           "drain": _drain(rate, settled_rate=settled_rate)}
    if sleep is not None:
        row["sleep"] = _drain(sleep, n=100)
    if p99_ms is not None:
        row["latency"] = {"n": 600, "p50_ms": p99_ms / 2, "p99_ms": p99_ms, "max_ms": p99_ms}
    return row


def _runs() -> list[dict]:
    return [_row("fleet", 8000.0, settled_rate=7800.0),
            _row(FILE_ROW, 7600.0, sleep=None, p99_ms=None, settled_rate=7500.0),
            _row("fleet, pure no-op", 14000.0, kind="noop", sleep=None, p99_ms=None,
                 settled_rate=14000.0),
            _row("Huey", 6000.0, sleep=680.0, p99_ms=1.0),
            _row("RQ SimpleWorker", 500.0, sleep=400.0, p99_ms=3.0, settled_rate=490.0)]


def test_drain_ratios_divide_fleet_by_each_like_for_like_peer():
    """fleet's enqueue_many and --file drains are each divided by the peer's; p99 the other way."""
    r = ratios(summarise(_runs()))
    assert set(r) == {"Huey", "RQ SimpleWorker"}
    assert r["Huey"]["drain"] == pytest.approx(8000 / 6000)
    assert r["Huey"]["drain_file"] == pytest.approx(7600 / 6000)
    assert r["RQ SimpleWorker"]["drain"] == pytest.approx(16.0)
    assert r["Huey"]["sleep"] == pytest.approx(700 / 680)
    assert r["Huey"]["p99"] == pytest.approx(0.5)


def test_celery_and_arq_rows_get_a_ratio_and_a_readme_line():
    """Celery and arq, measured like the other peers, are divided into like them and shown."""
    runs = _runs() + [_row("Celery", 1000.0, sleep=600.0, p99_ms=2.0),
                      _row("arq", 2000.0, sleep=350.0, p99_ms=8.0)]
    r = ratios(summarise(runs))
    assert r["Celery"]["drain"] == pytest.approx(8.0)
    assert r["arq"]["drain"] == pytest.approx(4.0)
    readme = readme_table(META, runs)
    assert "| Celery | " in readme and "8.00×" in readme
    assert "| arq | " in readme and "4.00×" in readme


def test_pure_noop_row_is_reported_apart_and_never_in_a_ratio():
    """The pure no-op row appears only in its own table, not in the like-for-like one."""
    s = summarise(_runs())
    assert "fleet, pure no-op" not in ratios(s)
    assert not any("pure no-op" in line for line in like_table(s))
    assert any(line.startswith("| fleet, pure no-op | ") for line in noop_table(s))
    assert "| fleet, pure no-op | " not in readme_table(META, _runs()).split("Not like")[0]


def test_medians_and_ranges_are_taken_over_rounds():
    """Three rounds give the median drain and its min–max."""
    runs = [_row("Huey", rate, round_no=i) for i, rate in enumerate((5000.0, 7000.0, 6000.0))]
    huey = summarise(runs)["Huey"]
    assert (huey["drain"], huey["drain_min"], huey["drain_max"]) == (6000.0, 5000.0, 7000.0)
    assert huey["rounds"] == 3


def test_figures_a_row_did_not_measure_show_as_dashes():
    """The --file row has no 10 ms drain or latency; a peer without a record no own-record rate."""
    s = summarise(_runs())
    assert s[FILE_ROW]["sleep"] is None and s["Huey"]["settled"] is None
    file_line = next(line for line in like_table(s) if line.startswith(f"| {FILE_ROW} |"))
    assert file_line.split(" | ")[4:6] == ["–", "–"]
    huey_line = next(line for line in like_table(s) if line.startswith("| Huey |"))
    assert huey_line.split(" | ")[3] == "–"


def test_ratio_is_none_when_a_figure_is_missing_or_zero():
    """A missing figure or a zero divisor gives no ratio instead of an exception."""
    assert peers_report.ratio(None, 5.0) is None
    assert peers_report.ratio(5.0, None) is None
    assert peers_report.ratio(5.0, 0.0) is None
    assert peers_report.ratio(6.0, 3.0) == 2.0


def test_targets_judge_issue_21_thresholds():
    """1.33× Huey misses the 3× target; 16× RQ SimpleWorker misses 40×; 2.0 ms p99 meets 2 ms."""
    lines = peers_report.targets(summarise(_runs()), 800.0)
    assert "| like-for-like drain ≥ 3× Huey | 1.33× | **no** |" in lines
    assert "| like-for-like drain ≥ 40× RQ SimpleWorker | 16.00× | **no** |" in lines
    assert any(line.startswith("| p99 enqueue→start ≤ 2 ms") and line.endswith("| yes |")
               for line in lines)


def test_update_section_replaces_only_what_lies_between_the_markers():
    """Text outside the markers is kept byte for byte; the body between them is replaced."""
    text = "head\n<!-- t:begin -->\nold\n<!-- t:end -->\ntail\n"
    assert update_section(text, "t", "new\n") == (
        "head\n<!-- t:begin -->\nnew\n<!-- t:end -->\ntail\n")


def test_update_section_without_markers_raises():
    """A document that lost its markers is refused rather than appended to."""
    with pytest.raises(ValueError, match="t:begin"):
        update_section("no markers here\n", "t", "x")


@pytest.mark.parametrize("path", ["README.md", "docs/performance.md"])
def test_published_documents_hold_the_generated_section(path):
    """README.md and docs/performance.md keep the section a full `make bench` rewrites."""
    with open(os.path.join(ROOT, path)) as handle:
        text = handle.read()
    assert "new table" in update_section(text, "bench-peers", "new table")


def test_only_a_full_run_rewrites_the_published_tables_by_default():
    """--quick and a custom --out leave README.md and docs alone; a plain full run rewrites."""
    import bench_peers
    assert bench_peers.parse_args([]).update_docs is True
    assert bench_peers.parse_args(["--quick"]).update_docs is False
    assert bench_peers.parse_args(["--out", "/tmp/x.md"]).update_docs is False
    assert bench_peers.parse_args(["--quick", "--update-docs"]).update_docs is True


def test_update_docs_writes_the_run_into_both_documents(tmp_path, monkeypatch):
    """The README gets the like-for-like table, performance.md every table; the rest stays."""
    import bench_peers
    section = "<!-- bench-peers:begin -->\nplaceholder\n<!-- bench-peers:end -->"
    (tmp_path / "docs").mkdir()
    for name in ("README.md", "docs/performance.md"):
        (tmp_path / name).write_text(f"before\n{section}\nafter\n")
    monkeypatch.setattr(bench_peers, "ROOT", str(tmp_path))
    bench_peers.update_docs(META, _runs())
    readme = (tmp_path / "README.md").read_text()
    perf = (tmp_path / "docs/performance.md").read_text()
    assert "placeholder" not in readme + perf
    assert readme.startswith("before\n") and readme.endswith("after\n")
    assert "| Huey | " in readme and "1.33×" in readme
    assert "| fleet, pure no-op | " in perf and "| fleet / peer |" in perf
