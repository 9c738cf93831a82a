"""``fleet worker``: a supervisor and N executor processes on this host."""

from __future__ import annotations

import logging
import sys

import click

from .common import connection_options, settings_from

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


@click.command()
@click.option("--count", "worker_count", type=int, default=None,
              help="Executor processes (FLEET_WORKER_COUNT; default 0 = one per CPU).")
@click.option("--queues", default=None,
              help="Queues to consume, highest priority first, comma-separated "
                   "(FLEET_QUEUES; default: default).")
@click.option("--allow", multiple=True,
              help="Module or package whose functions may run; repeatable or comma-separated "
                   "(FLEET_ALLOW). fleet.demo is always allowed.")
@connection_options
def worker(worker_count: int | None, queues: str | None, allow: tuple[str, ...],
           redis_url: str | None, namespace: str | None, config_file: str | None) -> None:
    """Run jobs: a supervisor and N executors. SIGTERM drains, a second signal stops cold."""
    from ..worker import run_worker  # here, so other commands do not pay for importing rq

    settings = settings_from(config_file, worker_count=worker_count, queues=queues,
                             allow=allow or None, redis_url=redis_url, namespace=namespace)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # sys.exit, not ctx.exit: fleet.cli.main runs click with standalone_mode=False, where
    # ctx.exit(code) only returns the code and the process would exit 0.
    sys.exit(run_worker(settings))
