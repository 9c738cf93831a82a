"""``python -m fleet.testing.chaos``: run the chaos workload, print the table, exit 1 on loss."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from ...errors import ConfigError
from .faults import DEFAULT_COUNTS, parse_faults
from .report import fault_lines, summary_table
from .runner import ChaosConfig, run_chaos

FAULT_HELP = ", ".join(f"{kind} ({count})" for kind, count in DEFAULT_COUNTS.items())


@click.command()
@click.option("--jobs", default=20_000, show_default=True)
@click.option("--seed", type=int, default=None, help="Default: random (printed).")
@click.option("--faults", "faults_text", default="all", show_default=True,
              help="Faults to inject, comma-separated, each KIND or KIND=COUNT (a KIND alone "
                   f"gets its default count; 'all' = the defaults): {FAULT_HELP}.")
@click.option("--deadline-s", default=420.0, show_default=True,
              help="Give up waiting for the jobs to finish after this long.")
@click.option("--workers", default=2, show_default=True, help="Worker fleets.")
@click.option("--executors", default=4, show_default=True, help="Executors per worker.")
@click.option("--workdir", default=None, help="Keep logs and data here (default: a temp dir).")
@click.option("--report", "report_path", default=None, help="Also write the table here.")
def main(report_path: str | None, faults_text: str, **options: Any) -> None:
    """Run the chaos workload and check that nothing was lost."""
    try:
        config = ChaosConfig(faults=parse_faults(faults_text), **options)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    started = time.monotonic()

    def say(text: str) -> None:
        click.echo(f"[{time.monotonic() - started:6.1f}s] {text}", err=True)

    result = run_chaos(config, progress=say)
    click.echo("\n".join(["faults:", *fault_lines(result), ""]), err=True)
    table = summary_table(result)
    click.echo(table)
    click.echo(f"\nlogs and data: {result.workdir}", err=True)
    if report_path:
        with open(report_path, "w") as handle:
            handle.write(table + "\n")
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
