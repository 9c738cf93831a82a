"""The ``fleet`` command. Each subcommand builds settings and calls one function.

Exit codes (``EXIT_*`` below and each error class's ``exit_code``): 0 success, 1 generic
failure, 2 bad input or configuration, 3 log or snapshot unusable, 4 Redis unreachable,
5 another controller holds the namespace, 6 the controller did not answer, 7 job not found,
8 a job failed, 130 interrupted.
"""

from __future__ import annotations

import sys

import click

from ..errors import FleetError
from . import admin, jobs
from .common import EXIT_INTERRUPTED
from .controller import controller
from .demo import demo
from .ops import register as register_ops
from .wal import wal


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fleet")
def app() -> None:
    """fleet: a durable, distributed job queue. The controller's log is the truth."""


for command in (controller, jobs.enqueue, jobs.job, jobs.jobs, jobs.result, admin.status,
                admin.dead, admin.cancel, admin.pause, admin.resume, admin.config, demo, wal):
    app.add_command(command)
register_ops(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: FleetError becomes one line on stderr and a named exit code."""
    try:
        code = app.main(args=argv, standalone_mode=False)
    except FleetError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    # Without standalone mode click returns ctx.exit(n)'s code instead of exiting.
    sys.exit(code if isinstance(code, int) else 0)
