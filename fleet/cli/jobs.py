"""``fleet enqueue``, ``fleet job`` and ``fleet result``: put jobs in, look them up."""

from __future__ import annotations

import dataclasses
import sys
from datetime import datetime
from typing import Any

import click
import orjson

from ..client import Client
from ..errors import EXIT_BAD_INPUT, FleetError, JobSpecError
from ..flow import MAX_EXPIRES_S, MAX_PRIORITY, MIN_PRIORITY
from ..handles import JobPage
from ..heap import collector_paused
from ..job import JobSpec, file_entry_wire, new_job_id, validate_spec
from ..protocol.intake import Receipt
from ..specs import checked_wire, run_at_ms, unique_ids
from ..state import IN_FLIGHT, STATES
from .common import (
    connection_options,
    keep_open,
    namespaces_option,
    parsed_namespaces,
    settings_from,
)

PROGRESS_FROM = 2000


def client_from(config_file: str | None, namespaces: str | None = None, **flags: Any
                ) -> Client:
    """The command's client; with ``--namespaces``, a sharded one (fleet.sharded)."""
    shards = parsed_namespaces(namespaces)
    settings = settings_from(config_file, **flags)
    return keep_open(Client(settings=settings, redis_url=settings.redis_url,
                            namespace=settings.namespace, namespaces=shards or None))


def _parse_arg(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def read_job_file(path: str) -> list[dict[str, Any]]:
    """Jobs from a JSON array or JSON lines file (``-`` is stdin), in the wire form, each
    checked once (``file_entry_wire``).

    Raises:
        JobSpecError: naming the file, line or index and what is wrong.
    """
    try:
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as handle:
                raw = handle.read()
    except OSError as exc:
        raise JobSpecError(f"cannot read {path}: {exc.strerror}") from None
    text = raw.strip()
    if not text:
        raise JobSpecError(f"{path} holds no jobs")
    entries = _decode_entries(text, path)
    wires = []
    for index, entry in enumerate(entries, 1):
        try:
            wires.append(file_entry_wire(entry))
        except JobSpecError as exc:
            raise JobSpecError(f"{path}: job {index}: {exc}") from None
    unique_ids(wire["id"] for wire in wires)
    return wires


def _decode_entries(text: bytes, path: str) -> list[Any]:
    if text.startswith(b"["):
        try:
            entries = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise JobSpecError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(entries, list):
            raise JobSpecError(f"{path} must hold a JSON array of jobs")
        return entries
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                entries.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise JobSpecError(f"{path}: line {number} is not valid JSON: {exc}") from None
    return entries


@click.command()
@click.argument("func", required=False)
@click.argument("args", nargs=-1)
@click.option("--file", "job_file", default=None, help="JSON array or JSON lines of jobs; - "
              "for stdin.")
@click.option("--kwargs", default=None, help="Keyword arguments as a JSON object.")
@click.option("--id", "job_id", default=None, help="Job id (default: random).")
@click.option("--queue", default="default", show_default=True)
@click.option("--timeout", type=float, default=None, help="Seconds before the job is killed.")
@click.option("--retries", type=int, default=None, help="Retries after the first attempt.")
@click.option("--delay", type=float, default=None, help="Run no earlier than in S seconds.")
@click.option("--at", "run_at", default=None, help="Run no earlier than this time: ISO 8601 "
              "with a timezone (2030-01-01T09:00:00+01:00, ...Z) or epoch seconds.")
@click.option("--after", "parents", multiple=True, metavar="ID",
              help="Run only after job ID ended (repeatable; docs/workflows.md).")
@click.option("--allow-failure", is_flag=True,
              help="With --after: run even if a parent ends dead or cancelled.")
@click.option("--pass-results", is_flag=True,
              help="With --after: give the job its parents' results.")
@click.option("--key", default=None, metavar="K",
              help="What the job belongs to (a customer, a tenant): per-key limits serve "
              "keys in turn. With --file: for entries that give none.")
@click.option("--priority", type=click.IntRange(MIN_PRIORITY, MAX_PRIORITY), default=None,
              help="0-9, higher first within the queue (default 0). With --file: for "
              "entries whose priority is 0 or absent.")
@click.option("--expires", "expires_s", type=click.FloatRange(0, MAX_EXPIRES_S, min_open=True),
              default=None, metavar="S", help="Cancel the job if it has not started S "
              "seconds after its enqueue (or its --delay/--at time).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
@namespaces_option
@connection_options
def enqueue(func: str | None, args: tuple[str, ...], job_file: str | None, kwargs: str | None,
            job_id: str | None, queue: str, timeout: float | None, retries: int | None,
            delay: float | None, run_at: str | None, parents: tuple[str, ...],
            allow_failure: bool, pass_results: bool, key: str | None, priority: int | None,
            expires_s: float | None, quiet: bool, config_file: str | None,
            **flags: Any) -> None:
    """Enqueue FUNC(ARGS...) or every job of --file; exit 0 only if all are durable.

    Each ARG is parsed as JSON when it is valid JSON (42, "x", [1,2]) and kept as a string
    otherwise.
    """
    if bool(func) == bool(job_file):
        raise click.UsageError("give FUNC [ARGS...] or --file, not both and not neither")
    if job_file and (parents or allow_failure or pass_results):
        raise click.UsageError("--after, --allow-failure and --pass-results are for FUNC; a job "
                               "file gives depends_on and allow_failure per job")
    if (allow_failure or pass_results) and not parents:
        raise click.UsageError("--allow-failure and --pass-results need --after ID")
    if job_file:
        with collector_paused():  # a big file's jobs all live until the command ends
            wires = read_job_file(job_file)  # each checked, naming its line
            _enqueue_wires(wires, key, priority, expires_s, quiet, config_file, flags)
        return
    assert func is not None  # the usage check above: FUNC when there is no --file
    spec = _spec_from_args(func, args, kwargs, job_id, queue, timeout, retries,
                           _not_before_ms(delay, run_at))
    wires = [checked_wire(dataclasses.replace(
        spec, depends_on=tuple(parents), allow_failure=allow_failure, pass_results=pass_results))]
    _enqueue_wires(wires, key, priority, expires_s, quiet, config_file, flags)


def _enqueue_wires(wires: list[dict[str, Any]], key: str | None, priority: int | None,
                   expires_s: float | None, quiet: bool, config_file: str | None,
                   flags: dict[str, Any]) -> None:
    """Send checked ``wires`` (with the flags' key, priority and expiry) and report each."""
    if key is not None or priority is not None or expires_s is not None:
        wires = [_with_flow(wire, key, priority, expires_s) for wire in wires]
    client = client_from(config_file, **flags)
    receipts = _send(client, wires)
    _report(receipts, quiet)


def _with_flow(wire: dict[str, Any], key: str | None, priority: int | None,
               expires_s: float | None) -> dict[str, Any]:
    """A checked wire form with the flags' key, priority and expiry where it gives none;
    checked again."""
    wire = dict(wire)
    if key is not None and "ky" not in wire:
        wire["ky"] = key
    if priority and not wire.get("py"):
        wire["py"] = priority
    if expires_s is not None and "ex" not in wire:
        wire["ex"] = expires_s
    validate_spec(wire)
    return wire


def _spec_from_args(func: str, args: tuple[str, ...], kwargs: str | None, job_id: str | None,
                    queue: str, timeout: float | None, retries: int | None, run_at_ms: int
                    ) -> JobSpec:
    parsed_kwargs: Any = {}
    if kwargs:
        try:
            parsed_kwargs = orjson.loads(kwargs)
        except orjson.JSONDecodeError as exc:
            raise JobSpecError(f"--kwargs is not valid JSON: {exc}") from None
        if not isinstance(parsed_kwargs, dict):
            raise JobSpecError("--kwargs must be a JSON object")
    return JobSpec(id=job_id or new_job_id(), func=func, args=[_parse_arg(a) for a in args],
                   kwargs=parsed_kwargs, queue=queue, timeout_s=timeout, max_retries=retries,
                   run_at_ms=run_at_ms)


def _not_before_ms(delay: float | None, run_at: str | None) -> int:
    """Epoch milliseconds from --delay or --at (0: run now)."""
    at_s = parse_run_at(run_at) if run_at is not None else None
    return run_at_ms(delay, at_s, names=("--delay", "--at"))


def parse_run_at(text: str) -> float:
    """Epoch seconds from ``--at``: ISO 8601 with a timezone, or epoch seconds.

    Raises:
        JobSpecError: the text is neither, or the datetime has no timezone.
    """
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not 0 <= seconds < 1e11:
            raise JobSpecError(f"--at {text}: epoch seconds out of range")
        return seconds
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise JobSpecError(f"--at {text!r}: expected an ISO 8601 datetime with a timezone "
                           "(2030-01-01T09:00:00+01:00) or epoch seconds") from None
    if when.tzinfo is None:
        raise JobSpecError(f"--at {text!r} has no timezone: add one (Z, +01:00), or the time "
                           "would depend on the clock of whoever reads it")
    return when.timestamp()


def _send(client: Client, wires: list[dict[str, Any]]) -> list[Receipt]:
    """Send jobs every one of which was checked (``validate_spec``) as it was read."""
    if len(wires) < PROGRESS_FROM:
        return client.enqueue_wires(wires)
    with click.progressbar(length=len(wires), label="enqueueing", file=sys.stderr) as bar:
        return client.enqueue_wires(wires, progress=bar.update)


def _report(receipts: list[Receipt], quiet: bool) -> None:
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    for receipt in receipts:
        counts[receipt.status] = counts.get(receipt.status, 0) + 1
        if not quiet:
            reason = f": {receipt.reason}" if receipt.reason else ""
            click.echo(f"{receipt.id} {receipt.status}{reason}")
    click.echo(f"{counts['accepted']} accepted, {counts['duplicate']} duplicate, "
               f"{counts['rejected']} rejected", err=True)
    if counts["rejected"]:
        sys.exit(EXIT_BAD_INPUT)


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@namespaces_option
@connection_options
def job(job_id: str, as_json: bool, config_file: str | None, **flags: Any) -> None:
    """Show a job: state, every attempt (worker, host, timings, error) and result."""
    info = client_from(config_file, **flags).job(job_id).info()
    if as_json:
        click.echo(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"job       {info['id']}\nstate     {state_text(info)}\nqueue     {info['queue']}\n"
               f"func      {info['func']}\nattempts  {info['attempt']} "
               f"(failures {info['failures']}, max retries {info['max_retries']})")
    if info.get("progress"):
        click.echo(f"progress  {progress_text(info['progress'])}")
    for attempt in info["attempts"]:
        duration = f"{attempt['duration_s']:.3f}s" if attempt["duration_s"] is not None else "-"
        error = f"  {attempt['error']}" if attempt.get("error") else ""
        click.echo(f"  #{attempt['attempt']} {attempt['outcome']:<9} {attempt['worker'] or '-'} "
                   f"{duration}{error}")
        if attempt.get("traceback"):
            click.echo(indented(attempt["traceback"], "      "))
    _echo_graph(info)
    _echo_flow(info)
    if info["state"] == "completed":
        click.echo(f"result    {orjson.dumps(info['result']).decode()}")
    if info.get("error"):
        click.echo(f"error     {info['error']}")


def _echo_graph(info: dict[str, Any]) -> None:
    """The parents and children lines of ``fleet job`` (only for a job that has some)."""
    for name in ("parents", "children"):
        related = info.get(name) or []
        if related:
            shown = ", ".join(f"{r['id']} ({r['state'] or 'forgotten'})" for r in related[:20])
            more = f", and {len(related) - 20} more" if len(related) > 20 else ""
            click.echo(f"{name:<9} {shown}{more}")
    if info.get("waiting_on"):
        click.echo(f"waiting on {', '.join(info['waiting_on'][:20])}")


def progress_text(progress: dict[str, Any]) -> str:
    """``40% (copying) 1.2 s ago``: a running attempt's latest progress report."""
    message = progress.get("message") or ""
    if message and not message.isprintable():  # job code picks it: no forged lines
        message = repr(message)
    shown = f" ({message})" if message else ""
    return f"{progress['fraction'] * 100:.0f}%{shown} {progress['age_s']:.1f} s ago"


def _echo_flow(info: dict[str, Any]) -> None:
    """The key, priority and expiry lines of ``fleet job`` (only for a job that has one)."""
    if info.get("key") is not None:
        click.echo(f"key       {info['key']}")
    if info.get("priority"):
        click.echo(f"priority  {info['priority']}")
    if info.get("expires_ms"):
        when = datetime.fromtimestamp(info["expires_ms"] / 1000).astimezone()
        click.echo(f"expires   {when.isoformat(timespec='milliseconds')} if not started by then")


def indented(text: str, prefix: str) -> str:
    """``text`` (a traceback) with every line behind ``prefix``, no trailing newline."""
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


@click.command()
@click.argument("job_id")
@click.option("--wait", "wait_s", type=float, default=0.0, help="Wait up to S seconds.")
@namespaces_option
@connection_options
def result(job_id: str, wait_s: float, config_file: str | None, **flags: Any) -> None:
    """Print a completed job's result as JSON (exit 8 if it ended dead)."""
    handle = client_from(config_file, **flags).job(job_id)
    try:
        value = handle.result(timeout_s=wait_s)
    except TimeoutError as exc:
        raise FleetError(str(exc)) from None
    click.echo(orjson.dumps(value).decode())


def state_text(info: dict[str, Any]) -> str:
    """A job's state, saying for an in-flight one whether a worker has it yet."""
    state: str = info["state"]
    if state != IN_FLIGHT:
        return state
    worker = info.get("running_on") or info.get("worker")
    return f"in_flight (running on {worker})" if worker else \
        "in_flight (dispatched, waiting for a worker)"


def _fill_page(client: Client, state: str | None, queue: str | None, limit: int,
               cursor: str | None) -> JobPage:
    """Ask page after page until ``limit`` jobs or the end: the controller's pages are
    bounded in work, so a rare state among many jobs can come back in short pages."""
    page = client.jobs(state, queue, limit, cursor)
    jobs = list(page.jobs)
    while page.cursor is not None and len(jobs) < limit:
        page = client.jobs(state, queue, limit - len(jobs), page.cursor)
        jobs += page.jobs
    return JobPage(jobs, page.cursor)


@click.command("jobs")
@click.option("--state", type=click.Choice(STATES), default=None, help="Only jobs in STATE.")
@click.option("--queue", default=None, help="Only jobs of QUEUE.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000),
              help="At most N jobs on this page.")
@click.option("--cursor", default=None, help="Where the previous page ended (printed with it).")
@click.option("--json", "as_json", is_flag=True, help='Print {"jobs": [...], "cursor": ...}.')
@namespaces_option
@connection_options
def jobs(state: str | None, queue: str | None, limit: int, cursor: str | None, as_json: bool,
         config_file: str | None, **flags: Any) -> None:
    """List jobs a page at a time: pending in line order, then in flight, then finished.

    The next page's command is printed on stderr; no cursor means the listing is complete.
    """
    page = _fill_page(client_from(config_file, **flags), state, queue, limit, cursor)
    if as_json:
        click.echo(orjson.dumps({"jobs": page.jobs, "cursor": page.cursor},
                                option=orjson.OPT_INDENT_2).decode())
    else:
        for item in page.jobs:
            error = f"  {item['error']}" if item.get("error") else ""
            click.echo(f"{item['id']}  {state_text(item)}  {item['queue']}  {item['func']}  "
                       f"attempts {item['attempt']}{error}")
    if page.cursor is None:
        click.echo(f"{len(page.jobs)} shown; end of the listing", err=True)
        return
    again = " ".join(f"--{name} {value}" for name, value in (("state", state),
                     ("queue", queue)) if value)
    click.echo(f"{len(page.jobs)} shown; next page: fleet jobs {again + ' ' if again else ''}"
               f"--cursor {page.cursor}", err=True)
