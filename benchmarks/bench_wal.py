"""WAL benchmark: append, replay, recovery, snapshot pause and memory per pending job.

    .venv/bin/python benchmarks/bench_wal.py [--records N] [--dir DIR] [--out PATH]

Runs on a real disk (by default a ``*.tmp`` directory under ``benchmarks/results/``, which is
on the repository's filesystem; tmpfs would make fsync free and the numbers meaningless),
prints a markdown table and writes it to ``benchmarks/results/wal.md``. Numbers, not
assertions: the targets are shown beside them. See docs/wal-format.md for what is measured.
"""

from __future__ import annotations

import argparse
import collections
import gc
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from fleet.controller.journal import Journal  # noqa: E402
from fleet.state import JobTable  # noqa: E402
from fleet.state import events as ev  # noqa: E402
from fleet.wal import SnapshotTaker, WalOptions, open_log, write_snapshot  # noqa: E402
from fleet.wal.segments import list_segments, snapshot_dir  # noqa: E402

QUEUES = ("default", "email", "reports")
RUN = {"w": "worker-3f2a", "h": "app-host-07", "st": 0, "ft": 0}
T0_MS = 1_750_000_000_000


@dataclass
class Row:
    """One line of the results table."""

    name: str
    value: str
    target: str = ""
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: str, target: str = "", note: str = "") -> None:
        self.rows.append(Row(name, value, target, note))
        print(f"  {name}: {value} {f'(target {target})' if target else ''} {note}", flush=True)


# -- realistic events --------------------------------------------------------------------


def job_spec(n: int) -> dict:
    """An enqueue as a web app sends it: uuid-like id, a function, small args and kwargs."""
    return {"id": f"{n:08x}-5e0c-4f7a-9b1d-{n * 7919 % 16**12:012x}", "q": QUEUES[n % 3],
            "f": "app.tasks.mail:send_welcome_email",
            "a": [n, f"user{n % 99991}@example.com"],
            "k": {"template": "welcome-v2", "locale": "en_GB", "priority": n % 5},
            "to": 60, "mr": 3}


def enqueue_event(n: int) -> dict:
    return ev.enqueued(job_spec(n), T0_MS + n, 30.0, 3)


def lifecycle(wave: int = 1000) -> Iterator[dict]:
    """An endless controller history, in waves of ``wave`` jobs.

    Each wave: ``wave`` enqueues, a dispatch of them plus last wave's retries, then their
    outcomes: 94% ack (with a small result), 4% fail (retried next wave after backoff), 2%
    lease expiry (also retried). Every 50th wave an operator cancels a few pending jobs.
    """
    n, retries = 0, []
    while True:
        now = T0_MS + n
        fresh = list(range(n, n + wave))
        n += wave
        for job in fresh:
            yield enqueue_event(job)
        batch = [(job, 1) for job in fresh] + retries
        retries = []
        for job, attempt in batch:
            yield ev.dispatched(job_spec(job)["id"], attempt, now + 30_000, now)
        for index, (job, attempt) in enumerate(batch):
            job_id = job_spec(job)["id"]
            if index % 50 == 7 and attempt < 4:
                yield ev.failed(job_id, attempt, "SMTPServerDisconnected: Connection unexpectedly "
                                "closed", {**RUN, "st": now, "ft": now + 40}, now + 2_000)
                retries.append((job, attempt + 1))
            elif index % 50 == 19 and attempt < 4:
                yield ev.expired(job_id, attempt, now + 1_000, now + 30_000)
                retries.append((job, attempt + 1))
            else:
                yield ev.acked(job_id, attempt, {"message_id": f"<{job}@mail>"},
                               {**RUN, "st": now, "ft": now + 35})


# -- helpers -----------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def filesystem_of(path: str) -> str:
    """The mount point and type holding ``path`` (from /proc/mounts)."""
    best = ("?", "?")
    try:
        with open("/proc/mounts") as handle:
            for line in handle:
                _, mount, fstype = line.split()[:3]
                if path.startswith(mount) and len(mount) >= len(best[0]):
                    best = (mount, fstype)
    except OSError:
        pass
    return f"{best[1]} ({best[0]})"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} records/s"


def fresh_dir(root: str, name: str) -> str:
    path = os.path.join(root, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def pending_table(count: int) -> JobTable:
    """``count`` pending jobs, each from an event decoded from JSON as the controller gets it
    (so no string is shared between jobs the way Python literals would be)."""
    table = JobTable()
    for n in range(count):
        table.apply(orjson.loads(orjson.dumps(enqueue_event(n))))
    return table


# -- measurements ------------------------------------------------------------------------


def bench_memory_and_snapshot_pause(report: Report, root: str, jobs: int) -> None:
    """Controller memory per pending job, and the fork pause of a snapshot of that table."""
    gc.collect()
    before = rss_bytes()
    table = pending_table(jobs)
    gc.collect()
    per_job = (rss_bytes() - before) / jobs
    report.add(f"memory per pending job (RSS delta over {jobs:,} jobs)", f"{per_job:,.0f} B/job")
    snapshot_pauses(report, fresh_dir(root, "snapshot"), table, f"{jobs:,} pending jobs")
    # The worst case for the pause: every job a JobRecord (thawed, its spec decoded), which
    # holds about three times the memory of a cold one, so fork copies more page tables.
    for job_id in list(table.jobs):
        table.get(job_id).func  # noqa: B018 - thaws the job and decodes its spec
    snapshot_pauses(report, fresh_dir(root, "snapshot-thawed"), table,
                    f"{jobs:,} pending jobs, all thawed")
    del table
    gc.collect()
    tracemalloc.start()
    table = pending_table(jobs)
    gc.collect()
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    report.add(f"memory per pending job (tracemalloc over {jobs:,} jobs)",
               f"{traced / jobs:,.0f} B/job")
    del table
    gc.collect()


def snapshot_pauses(report: Report, data_dir: str, table: JobTable, what: str) -> None:
    """The fork pause of five snapshots of ``table`` (and how long the child took)."""
    taker = SnapshotTaker(data_dir, fork=True)
    pauses, child_s = [], []
    for _ in range(5):
        taker.start(table)
        pauses.append(taker.last_pause_s)
        taker.poll(block=True)
        child_s.append(taker.last_duration_s)
    size = sum(os.path.getsize(os.path.join(snapshot_dir(data_dir), name))
               for name in os.listdir(snapshot_dir(data_dir)))
    report.add(f"snapshot pause, fork, {what} (max of 5)",
               f"{max(pauses) * 1000:.1f} ms", "<= 50 ms",
               f"median {statistics.median(pauses) * 1000:.1f} ms; the child writes "
               f"{size / 1e6:.0f} MB in {statistics.median(child_s):.1f} s")


def bench_append(report: Report, root: str, records: int) -> None:
    """Record + group commit with fsync ``always`` at batch sizes 1, 100 and 1000.

    Timed: ``Journal.record`` (number + apply to the table) of each event and one
    ``Journal.commit`` (encode, write, fsync) per batch. Building the events is not timed.
    """
    for batch, cap in ((1, 20_000), (100, 200_000), (1000, records)):
        count = min(records, cap) // batch * batch
        data_dir = fresh_dir(root, f"append-{batch}")
        log = open_log(data_dir, WalOptions(fsync="always"))
        journal = Journal(log.table, log.writer)
        gc.collect()
        record_s = commit_s = 0.0
        for first in range(0, count, batch):
            events = [enqueue_event(n) for n in range(first, first + batch)]
            started = time.perf_counter()
            for event in events:
                journal.record(event)
            recorded = time.perf_counter()
            journal.commit()
            record_s, commit_s = (record_s + recorded - started,
                                  commit_s + time.perf_counter() - recorded)
        fsyncs = log.writer.fsyncs
        log.close()
        report.add(f"append, fsync always, batch {batch}", rate(count, record_s + commit_s),
                   ">= 100,000 records/s" if batch == 1000 else "",
                   f"{count:,} enqueue records; per batch {record_s / fsyncs * 1e6:,.0f} µs "
                   f"recording + {commit_s / fsyncs * 1e6:,.0f} µs commit (encode, write, "
                   "fsync)")
        shutil.rmtree(data_dir)


def build_log(data_dir: str, records: int, snapshot_fraction: float) -> dict:
    """Write ``records`` lifecycle records (fsync off: building is not what is measured),
    snapshotting once ``snapshot_fraction`` of them are in. Returns what the log holds."""
    log = open_log(data_dir, WalOptions(fsync="off"))
    journal = Journal(log.table, log.writer)
    kinds: collections.Counter[str] = collections.Counter()
    snapshot_at, snapshot_seq = int(records * snapshot_fraction), 0
    for event in lifecycle():
        if not journal.record(event):
            raise AssertionError(f"lifecycle event did not apply: {event}")
        seq = journal.next_seq - 1
        kinds[ev.NAMES[event[0]]] += 1
        if len(journal.pending) == 1000 or seq == records:
            journal.commit()
        if seq == snapshot_at:
            journal.commit()
            write_snapshot(log.table, data_dir)
            snapshot_seq = snapshot_at
        if seq == records:
            break
    states = dict(log.table.counts)
    log.close()
    segments = list_segments(log.writer.files, data_dir)
    return {"kinds": kinds, "states": states, "snapshot_seq": snapshot_seq,
            "segments": len(segments),
            "bytes": sum(os.path.getsize(path) for _, path in segments)}


def timed_open(data_dir: str, runs: int = 3) -> tuple[float, str, object]:
    """Median open_log time over ``runs`` (this machine is shared: single runs are noisy)."""
    times = []
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        log = open_log(data_dir)
        times.append(time.perf_counter() - started)
        log.close()
        recovery, log = log.report, None  # the next gc.collect() frees the table, untimed
    runs_text = "runs " + ", ".join(f"{t:.2f}" for t in times) + " s"
    return statistics.median(times), runs_text, recovery


def bench_recovery(report: Report, root: str, records: int) -> None:
    """Recovery of a lifecycle log, with a snapshot at 90% and without any."""
    data_dir = fresh_dir(root, "recovery")
    built = build_log(data_dir, records, 0.9)
    kinds = ", ".join(f"{kind} {count:,}" for kind, count in built["kinds"].most_common())
    states = ", ".join(f"{state} {count:,}" for state, count in built["states"].items() if count)
    report.notes.append(
        f"The {records:,}-record log: {kinds}; {built['bytes'] / 1e6:.0f} MB in "
        f"{built['segments']} segment(s), frames of 1,000 records. It leaves a table of "
        f"{sum(built['states'].values()):,} jobs ({states}); nothing is compacted, so the "
        f"snapshot at seq {built['snapshot_seq']:,} holds every job enqueued by then.")
    elapsed, runs, with_snapshot = timed_open(data_dir)
    report.add(f"recovery, {records:,} records, snapshot at 90% (median of 3)",
               f"{elapsed:.2f} s", "<= 1 s",
               f"{runs}; {with_snapshot.records_replayed:,} records replayed after the "
               "snapshot")
    shutil.move(snapshot_dir(data_dir), os.path.join(root, "snapshots-aside"))
    elapsed, runs, without = timed_open(data_dir)
    report.add(f"recovery, {records:,} records, no snapshot (median of 3)", f"{elapsed:.2f} s",
               "<= 3 s", f"{runs}; {without.records_replayed:,} records from "
               f"{without.segments_read} segments")
    report.add("replay rate (decode + apply, no snapshot)", rate(without.records_replayed,
                                                                elapsed))
    shutil.rmtree(data_dir)
    shutil.rmtree(os.path.join(root, "snapshots-aside"))


# -- output ------------------------------------------------------------------------------


def markdown(report: Report, args: argparse.Namespace, root: str) -> str:
    lines = [
        "# WAL benchmark",
        "",
        f"`benchmarks/bench_wal.py --records {args.records}` on {time.strftime('%Y-%m-%d')}: "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs "
        f"({cpu_model()}), {platform.system()} "
        f"{platform.release()}; data on {filesystem_of(root)}. Page cache warm (as after a "
        "`kill -9` of the controller, not after a reboot).",
        "",
        "| measurement | result | target | notes |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.name} | {r.value} | {r.target} | {r.note} |" for r in report.rows]
    lines += ["", *report.notes, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000,
                        help="log records and pending jobs to measure with (default 1,000,000)")
    parser.add_argument("--dir", default=None,
                        help="scratch directory on the disk to test (default: a temp dir "
                             "under benchmarks/results/)")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "wal.md"))
    args = parser.parse_args()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    root = tempfile.mkdtemp(prefix="bench-", suffix=".tmp",
                            dir=args.dir or os.path.join(HERE, "results"))
    print(f"scratch: {root} on {filesystem_of(root)}")
    if "tmpfs" in filesystem_of(root):
        print("warning: tmpfs makes fsync free; pass --dir on a real disk", file=sys.stderr)
    report = Report()
    try:
        bench_memory_and_snapshot_pause(report, root, args.records)
        bench_append(report, root, args.records)
        bench_recovery(report, root, args.records)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = markdown(report, args, root)
    print("\n" + text)
    with open(args.out, "w") as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
