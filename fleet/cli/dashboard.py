"""``fleet dashboard``: serve the web dashboard (needs the ``dashboard`` extra)."""

from __future__ import annotations

from typing import Any

import click

from ..errors import ConfigError
from .common import connection_options
from .jobs import client_from


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="FLEET_DASHBOARD_HOST",
              help="Address to bind (FLEET_DASHBOARD_HOST); any but loopback needs --token.")
@click.option("--port", default=9181, show_default=True, type=click.IntRange(0, 65535),
              envvar="FLEET_DASHBOARD_PORT", help="Port (FLEET_DASHBOARD_PORT).")
@click.option("--token", default="", envvar="FLEET_DASHBOARD_TOKEN",
              help="Require this token: Bearer for the API, a login for browsers "
                   "(FLEET_DASHBOARD_TOKEN).")
@click.option("--read-only", is_flag=True, envvar="FLEET_DASHBOARD_READ_ONLY",
              help="Show no actions and refuse them with 403 (FLEET_DASHBOARD_READ_ONLY).")
@connection_options
def dashboard(host: str, port: int, token: str, read_only: bool, config_file: str | None,
              **flags: Any) -> None:
    """Serve the dashboard: every job, its attempts, queues, workers, dead letters."""
    from ..dashboard.auth import is_loopback

    if not token and not is_loopback(host):
        raise ConfigError(f"--host {host} is not a loopback address: give --token (or "
                          "FLEET_DASHBOARD_TOKEN), or anyone who reaches it could act on jobs")
    try:
        import uvicorn

        from ..dashboard import DashboardOptions, create_app
    except ImportError as exc:
        raise ConfigError(f"the dashboard needs its extra: pip install 'fleet[dashboard]' "
                          f"({exc.name} is missing)") from None
    client = client_from(config_file, **flags)
    app = create_app(client, DashboardOptions(token=token, read_only=read_only))
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"fleet dashboard on http://{shown}:{port}/ (namespace {client.namespace}"
               f"{', read-only' if read_only else ''}{', token required' if token else ''})",
               err=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="on")
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise ConfigError(f"could not serve on {shown}:{port} (in use, or not an address "
                          "of this host)")
