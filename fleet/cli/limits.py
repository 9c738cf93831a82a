"""``fleet limit set / clear / list``: a queue's fleet-wide limits (docs/flow-control.md)."""

from __future__ import annotations

from typing import Any

import click
import orjson

from ..errors import ConfigError
from ..flow import MAX_CONCURRENCY, MAX_PER_KEY, parse_rate
from .common import connection_options, namespaces_option
from .jobs import client_from


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_rate(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


@click.group()
def limit() -> None:
    """Limit a queue's work fleet-wide: jobs in flight, dispatches per period, jobs per key."""


@limit.command("set")
@click.argument("queue")
@click.option("--concurrency", type=click.IntRange(1, MAX_CONCURRENCY), default=None,
              help="At most N jobs of QUEUE in flight across the fleet.")
@click.option("--rate", callback=_rate, default=None, metavar="N/s|N/m|N/h",
              help="At most N dispatches per second, minute or hour (a token bucket).")
@click.option("--per-key", "per_key", type=click.IntRange(1, MAX_PER_KEY), default=None,
              help="At most N jobs per key in flight; keys take turns.")
@connection_options
@namespaces_option
def limit_set(queue: str, concurrency: int | None, rate: str | None, per_key: int | None,
              config_file: str | None, **flags: Any) -> None:
    """Set limits of QUEUE (those not given stay as they are); recorded in the log."""
    if concurrency is None and rate is None and per_key is None:
        raise click.UsageError("give at least one of --concurrency, --rate, --per-key")
    done = client_from(config_file, **flags).set_limits(queue, concurrency, rate, per_key)
    click.echo(f"{queue}: {done['text']}")
    _warn_unused(done, queue)


@limit.command("clear")
@click.argument("queue")
@click.option("--concurrency", is_flag=True, help="Clear the concurrency limit.")
@click.option("--rate", is_flag=True, help="Clear the rate limit.")
@click.option("--per-key", "per_key", is_flag=True, help="Clear the per-key limit.")
@connection_options
@namespaces_option
def limit_clear(queue: str, concurrency: bool, rate: bool, per_key: bool,
                config_file: str | None, **flags: Any) -> None:
    """Clear the named limits of QUEUE (none named: all of them)."""
    kinds = [kind for kind, given in (("concurrency", concurrency), ("rate", rate),
                                      ("per_key", per_key)) if given]
    done = client_from(config_file, **flags).clear_limits(queue, *kinds)
    click.echo(f"{queue}: {done['text']}")


@limit.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print queue: limits as JSON.")
@connection_options
@namespaces_option
def limit_list(as_json: bool, config_file: str | None, **flags: Any) -> None:
    """Every queue's limits."""
    data = client_from(config_file, **flags).limits()
    if as_json:
        click.echo(orjson.dumps({queue: entry["limits"] for queue, entry in data.items()},
                                option=orjson.OPT_INDENT_2).decode())
        return
    if not data:
        click.echo("no queue has limits")
    for queue, entry in data.items():
        click.echo(f"{queue:<24} {entry['text']}")


def _warn_unused(reply: Any, queue: str) -> None:
    if isinstance(reply, dict) and reply.get("in_use") is False:
        click.echo(f"warning: no job is in queue {queue!r} and no live worker consumes it "
                   "(a typo?); the limits are recorded all the same", err=True)
