"""The ``fleet`` command. Each subcommand builds settings and calls one function.

Exit codes (``EXIT_*`` below and each error class's ``exit_code``): 0 success, 1 generic
failure, 2 bad input or configuration, 3 log or snapshot unusable, 4 Redis unreachable,
5 another controller holds the namespace, 6 the controller did not answer, 7 job not found,
8 a job failed, 10 another data dir owns the namespace (``--take-over``), 130 interrupted.
"""

from __future__ import annotations

import signal
import sys

import click

from ..errors import EXIT_INTERRUPTED, FleetError
from . import admin, jobs
from .acl import acl
from .common import close_clients
from .controller import controller
from .dashboard import dashboard
from .demo import demo
from .limits import limit
from .wal import wal
from .worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fleet")
def app() -> None:
    """fleet: a durable, distributed job queue. The controller's log is the truth."""


for command in (controller, jobs.enqueue, jobs.job, jobs.jobs, jobs.result, admin.status,
                admin.dead, admin.cancel, admin.pause, admin.resume, admin.config, demo, wal, acl,
                dashboard, worker, limit):
    app.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: FleetError becomes one line on stderr and a named exit code.

    Called with ``argv`` (from Python, as the tests do), the caller's SIGINT handler is put
    back afterwards. As the ``fleet`` command, SIGINT is ignored once the exit code is known:
    the interpreter's exit puts the default handler back in place of a Python one, and a
    Ctrl-C then would kill the process by the signal half-way through its exit.
    """
    previous = signal.getsignal(signal.SIGINT)
    try:
        code = _run(argv)
    finally:
        signal.signal(signal.SIGINT, previous if argv is not None else signal.SIG_IGN)
    if _late_interrupts:
        click.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    sys.exit(code)


_late_interrupts: list[int] = []


def _note_interrupt(signum: int, frame: object) -> None:
    _late_interrupts.append(signum)


def _run(argv: list[str] | None) -> int:
    try:
        try:
            code = app.main(args=argv, standalone_mode=False)
        finally:
            # The command is over: a Ctrl-C from here on is noted, not raised, so that it
            # cannot land in redis-py's cleanup (__del__) and print a traceback there; the
            # clients are closed now, while it cannot.
            signal.signal(signal.SIGINT, _note_interrupt)
            close_clients()
    except FleetError as exc:
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        show_click_error(exc)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    # Without standalone mode click returns ctx.exit(n)'s code instead of exiting.
    return code if isinstance(code, int) else 0


def show_click_error(exc: click.ClickException) -> None:
    """click's own message for ``exc``, with fleet's ``error:`` prefix instead of click's
    ``Error:`` so that every failure reads alike (a usage error keeps its usage line)."""
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        click.echo(ctx.get_usage(), err=True)
        click.echo(f"Try '{ctx.command_path} --help' for help.\n", err=True)
    click.echo(f"error: {exc.format_message()}", err=True)
