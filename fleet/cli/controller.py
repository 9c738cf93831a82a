"""``fleet controller``: run the single writer of a namespace."""

from __future__ import annotations

import logging

import click

from .common import connection_options, settings_from


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.command()
@click.option("--data-dir", default=None, help="Directory for the log and snapshots "
              "(FLEET_DATA_DIR; default ./fleet-data).")
@click.option("--metrics-port", default=None, type=int,
              help="Port for /metrics and /healthz (FLEET_METRICS_PORT; default 9464; 0 = off).")
@click.option("--metrics-host", default=None, help="Address the metrics port binds to "
              "(FLEET_METRICS_HOST; default 127.0.0.1).")
@click.option("--fsync", default=None, type=click.Choice(["always", "interval", "off"]),
              help="When the log is fsynced (FLEET_FSYNC; default always).")
@click.option("--schedule", "schedule_file", default=None,
              help="YAML file of periodic jobs (FLEET_SCHEDULE_FILE).")
@connection_options
def controller(config_file, **flags) -> None:
    """Run the controller: the log, dispatch, leases, retries and acks of one namespace."""
    from ..controller import Controller

    settings = settings_from(config_file, **flags)
    setup_logging()
    ctl = Controller(settings)
    try:
        ctl.start()
        code = ctl.run()
    finally:
        ctl.close()
    raise SystemExit(code)
