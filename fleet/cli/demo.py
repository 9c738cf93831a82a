"""``fleet demo``: the kill -9 demo as local processes."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--jobs", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Simulated jobs in the job file.")
@click.option("--workers", default=8, show_default=True, type=click.IntRange(min=1),
              help="Executors (fleet worker --count).")
@click.option("--workdir", default=None, help="Where logs and the data dir go (default: a "
              "new temporary directory).")
def demo(jobs: int, workers: int, workdir: str | None) -> None:
    """Enqueue simulated jobs, kill -9 the controller mid-run, restart it, show none is lost."""
    from ..testing.demo_run import DemoOptions, run_demo

    code = run_demo(DemoOptions(jobs=jobs, workers=workers, workdir=workdir),
                    say=lambda line: click.echo(line))
    sys.exit(code)
