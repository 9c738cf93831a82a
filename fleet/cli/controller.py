"""``fleet controller``: run the single writer of a namespace."""

from __future__ import annotations

import logging
from typing import Any

import click

from ..config import FSYNC_POLICIES
from .common import connection_options, settings_from


def setup_logging(level: str = "INFO", log_format: str = "human") -> None:
    from ..logs import formatter

    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format, "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])


@click.command()
@click.option("--data-dir", default=None, help="Directory for the log and snapshots "
              "(FLEET_DATA_DIR; default ./fleet-data).")
@click.option("--metrics-port", default=None, type=int,
              help="Port for /metrics and /healthz (FLEET_METRICS_PORT; default 9464; 0 = off).")
@click.option("--metrics-host", default=None, help="Address the metrics port binds to "
              "(FLEET_METRICS_HOST; default 127.0.0.1).")
@click.option("--fsync", default=None, type=click.Choice(FSYNC_POLICIES),
              help="When the log is fsynced (FLEET_FSYNC; default always).")
@click.option("--schedule", "schedule_file", default=None,
              help="YAML file of periodic jobs (FLEET_SCHEDULE_FILE).")
@click.option("--take-over", is_flag=True, default=False,
              help="Make this data dir the namespace's owner even though Redis records "
              "another one (a standby taking over for good; the old dir's jobs stay in its "
              "log). Never needed to restart the owner itself.")
@click.option("--standby", is_flag=True, default=False,
              help="Wait, touching neither the log nor the ready lists, until the data dir's "
              "lock and the namespace's lease are free, then recover and serve "
              "(docs/scaling.md).")
@click.option("--log-format", default=None, type=click.Choice(["human", "json"]),
              help="human lines, or one JSON object a line (FLEET_LOG_FORMAT; default human).")
@connection_options
def controller(config_file: str | None, take_over: bool, standby: bool, **flags: Any
               ) -> None:
    """Run the controller: the log, dispatch, leases, retries and acks of one namespace.

    Exit codes: 3 the log is unusable, 4 Redis unreachable, 5 another controller holds the
    namespace (or took it over: fenced out), 10 another data dir owns the namespace.
    """
    from ..controller import Controller
    from ..controller.standby import start_when_free

    settings = settings_from(config_file, **flags)
    setup_logging(log_format=settings.log_format)
    if standby:
        started = start_when_free(settings, take_over)
        if started is None:
            raise SystemExit(0)  # stopped while waiting
        ctl = started
    else:
        ctl = Controller(settings)
    try:
        if not standby:
            ctl.start(take_over=take_over)
        code = ctl.run()
    finally:
        ctl.close()
    raise SystemExit(code)
