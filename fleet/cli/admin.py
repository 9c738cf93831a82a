"""``fleet status``, ``dead ...``, ``cancel``, ``pause`` / ``resume`` and ``config show``."""

from __future__ import annotations

import time
from typing import Any

import click
import orjson

from ..config import describe, load_settings
from ..flow import limits_text
from ..state import STATES
from .common import connection_options, namespaces_option
from .jobs import client_from, indented


def _print_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status document as JSON.")
@click.option("--watch", "watch_s", type=float, default=None, is_flag=False, flag_value=2.0,
              help="Refresh every S seconds (default 2) until Ctrl-C.")
@namespaces_option
@connection_options
def status(as_json: bool, watch_s: float | None, config_file: str | None, **flags: Any
           ) -> None:
    """Counts by state and queue, rates, workers, WAL and snapshot."""
    client = client_from(config_file, **flags)
    while True:
        data = client.status()
        if as_json:
            _print_json(data)
        else:
            text = render_shards(data) if "shards" in data else render_status(data)
            click.echo(("\x1b[H\x1b[2J" if watch_s else "") + text)
        if not watch_s:
            return
        time.sleep(watch_s)


def render_status(data: dict[str, Any]) -> str:
    """The human-readable status table."""
    ctl, wal, snap = data["controller"], data["wal"], data["snapshot"]
    lines = [f"namespace {data['namespace']}  epoch {data['epoch']}  controller pid "
             f"{ctl['pid']} on {ctl['host']}  up {ctl['uptime_s']:.0f}s  "
             f"recovery {ctl['recovery_ms']:.0f} ms"]
    header = f"{'queue':<16}" + "".join(f"{s:>11}" for s in STATES)
    lines += ["", header, "-" * len(header)]
    for queue, counts in sorted(data["queues"].items()):
        paused = " (paused)" if queue in data["paused"] else ""
        lines.append(f"{queue + paused:<16}" + "".join(f"{counts[s]:>11}" for s in STATES))
    lines.append(f"{'total':<16}" + "".join(f"{data['states'][s]:>11}" for s in STATES))
    lines += _limit_lines(data)
    rates = data.get("rates_per_s") or {}
    lines += ["", "last minute: " + (", ".join(f"{k} {v:.1f}/s" for k, v in rates.items())
                                     or "(collecting)"),
              f"oldest pending: {_age(data.get('oldest_pending_age_s'))}",
              f"WAL: {wal['bytes'] / 1e6:.1f} MB, last seq {wal['last_seq']}, fsync "
              f"{wal['fsync']}; last snapshot: seq {snap['last_seq']}, "
              f"{_age(snap['age_s'])} ago",
              "", f"workers: {len(data['workers'])}, executors {data['executors']}, "
              f"busy {data['busy']}" + _waiting(data)]
    for worker in data["workers"]:
        queues = ",".join(str(q) for q in worker.get("queues") or ()) or "-"
        lines.append(f"  {worker['host']:<20} {worker['id']:<36} busy {worker['busy']}/"
                     f"{worker['executors']}  done {worker['done']}  queues {queues}")
    return "\n".join(lines)


def _limit_lines(data: dict[str, Any]) -> list[str]:
    """The queues' limits, and what each holds back now (absent from an older status)."""
    limits, held = data.get("limits") or {}, data.get("held_back") or {}
    lines = ["", "limits:"] if limits else []
    for queue, queue_limits in sorted(limits.items()):
        back = ", ".join(f"{count} by {kind.replace('_', '-')}"
                         for kind, count in (held.get(queue) or {}).items() if count)
        lines.append(f"  {queue:<16} {limits_text(queue_limits)}"
                     + (f"; held back: {back}" if back else ""))
    return lines


def render_shards(data: dict[str, Any]) -> str:
    """The status of every shard of a sharded namespace set, then their totals."""
    parts = [render_status(doc) for doc in data["shards"].values()]
    header = f"{'all shards':<16}" + "".join(f"{s:>11}" for s in STATES)
    total = [header, "-" * len(header)]
    for queue, counts in sorted(data["queues"].items()):
        total.append(f"{queue:<16}" + "".join(f"{counts.get(s, 0):>11}" for s in STATES))
    total.append(f"{'total':<16}" + "".join(f"{data['states'].get(s, 0):>11}"
                                            for s in STATES))
    total.append(f"namespaces {','.join(data['namespaces'])}: executors {data['executors']}, "
                 f"busy {data['busy']}")
    return "\n\n".join([*parts, "\n".join(total)])


def _waiting(data: dict[str, Any]) -> str:
    waiting = data.get("in_flight_waiting")  # absent from an older controller's status
    return f"; in flight but dispatched, waiting for a worker: {waiting}" if waiting else ""


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}min"


@click.group()
def dead() -> None:
    """List, retry and purge dead-letter jobs."""


@dead.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(min=0),
              help="Show at most N jobs, oldest first; 0 shows all.")
@click.option("--brief", is_flag=True, help="One line per job: no tracebacks.")
@namespaces_option
@connection_options
def dead_list(as_json: bool, limit: int, brief: bool, config_file: str | None,
              **flags: Any) -> None:
    """Jobs that ran out of retries, with their last error and its traceback."""
    jobs = client_from(config_file, **flags).request("dead_list", limit=limit)
    if as_json:
        _print_json(jobs)
        return
    for job in jobs:
        click.echo(f"{job['id']}  {job['queue']}  {job['func']}  attempts {job['attempts']}  "
                   f"{job['error']}")
        if job.get("traceback") and not brief:
            click.echo(indented(job["traceback"], "    "))
    more = f" shown (the first {limit}; --limit 0 shows all)" if limit and len(jobs) == limit \
        else ""
    click.echo(f"{len(jobs)} dead{more}", err=True)


@dead.command("retry")
@click.argument("ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every dead job.")
@namespaces_option
@connection_options
def dead_retry(ids: tuple[str, ...], retry_all: bool, config_file: str | None,
               **flags: Any) -> None:
    """Send dead jobs back to pending with a fresh retry budget."""
    if bool(ids) == retry_all:
        raise click.UsageError("give job ids or --all")
    args = {"all": True} if retry_all else {"ids": list(ids)}
    done = client_from(config_file, **flags).request("dead_retry", **args)
    click.echo(f"retried {len(done['retried'])}")
    if done["not_dead"]:
        raise click.ClickException(f"not dead: {', '.join(done['not_dead'])}")


@dead.command("purge")
@click.option("--older-than", "older_than_s", type=float, default=0.0,
              help="Only jobs dead for at least S seconds.")
@namespaces_option
@connection_options
def dead_purge(older_than_s: float, config_file: str | None, **flags: Any) -> None:
    """Forget dead jobs (recorded in the log)."""
    done = client_from(config_file, **flags).request("dead_purge", older_than_s=older_than_s)
    click.echo(f"purged {done['purged']}")


@click.command()
@click.argument("ids", nargs=-1, required=True)
@namespaces_option
@connection_options
def cancel(ids: tuple[str, ...], config_file: str | None, **flags: Any) -> None:
    """Cancel pending or running jobs."""
    done = client_from(config_file, **flags).request("cancel", ids=list(ids))
    click.echo(f"cancelled {len(done['cancelled'])}")
    if done["not_cancellable"]:
        raise click.ClickException(f"not cancellable (unknown or finished): "
                                   f"{', '.join(done['not_cancellable'])}")


@click.command()
@click.argument("queue")
@namespaces_option
@connection_options
def pause(queue: str, config_file: str | None, **flags: Any) -> None:
    """Stop dispatching from QUEUE (a queue no job or worker uses yet is paused too, with a
    warning: jobs enqueued to it later wait)."""
    done = client_from(config_file, **flags).pause(queue)
    click.echo(f"paused {queue}")
    _warn_unused(done, queue)


@click.command()
@click.argument("queue")
@namespaces_option
@connection_options
def resume(queue: str, config_file: str | None, **flags: Any) -> None:
    """Start dispatching from QUEUE again."""
    done = client_from(config_file, **flags).resume(queue)
    click.echo(f"resumed {queue}")
    _warn_unused(done, queue)


def _warn_unused(reply: Any, queue: str) -> None:
    # An older controller's reply has no in_use: say nothing rather than guess.
    if isinstance(reply, dict) and reply.get("in_use") is False:
        click.echo(f"warning: no job is in queue {queue!r} and no live worker consumes it "
                   "(a typo?); see `fleet status` for the queues in use", err=True)


@click.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@click.option("--config", "config_file", default=None, help="YAML settings file.")
@click.option("--json", "as_json", is_flag=True)
def config_show(config_file: str | None, as_json: bool) -> None:
    """Every setting, its effective value and where it came from."""
    settings, sources = load_settings({}, config_file=config_file)
    rows = describe(settings, sources)
    if as_json:
        _print_json({name: {"value": value, "source": source} for name, value, source in rows})
        return
    for name, value, source in rows:
        shown = ",".join(value) if isinstance(value, tuple) else value
        if name == "limits":
            shown = "; ".join(f"{queue}: {limits_text(limits)}"
                              for queue, limits in value.items()) or "none"
        click.echo(f"{name:<24} {shown!s:<32} {source}")
