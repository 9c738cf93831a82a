"""``fleet worker``: a supervisor and N executor processes on this host."""

from __future__ import annotations

import logging
import os
import sys

import click

from .common import connection_options, namespaces_option, parsed_namespaces, settings_from

LOG_LEVELS = ("debug", "info", "warning", "error")
# fleet.worker.executor.JOBS_LOGGER (one line per finished job), named here so that other
# commands do not import rq.
JOBS_LOGGER = "fleet.worker.jobs"


@click.command()
@click.option("--count", "worker_count", type=int, default=None,
              help="Executor processes (FLEET_WORKER_COUNT; default 0 = one per CPU).")
@click.option("--queues", default=None,
              help="Queues to consume, highest priority first, comma-separated "
                   "(FLEET_QUEUES; default: default).")
@click.option("--allow", multiple=True,
              help="Module or package whose functions may run; repeatable or comma-separated "
                   "(FLEET_ALLOW). fleet.demo is always allowed.")
@click.option("--path", "import_paths", multiple=True, envvar="FLEET_WORKER_PATH",
              type=click.Path(exists=True, file_okay=False),
              help="Directory to import job code from, put before the rest of sys.path; "
                   "repeatable (FLEET_WORKER_PATH, separated by ':'). The current directory "
                   "is always on it.")
@click.option("--burst", is_flag=True,
              help="Exit 0 once the queues stay empty and every executor is idle "
                   "(docs/worker.md says exactly when).")
@click.option("--quiet", is_flag=True, help="No log line per finished job.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
              default="info", show_default=True, help="Log level of the worker's own lines.")
@click.option("--log-format", default=None, type=click.Choice(["human", "json"]),
              help="human lines, or one JSON object a line with job id, attempt, queue "
                   "and outcome (FLEET_LOG_FORMAT; default human).")
@namespaces_option
@connection_options
def worker(worker_count: int | None, queues: str | None, allow: tuple[str, ...],
           import_paths: tuple[str, ...], burst: bool, quiet: bool, log_level: str,
           log_format: str | None, redis_url: str | None, namespace: str | None,
           config_file: str | None, namespaces: str | None) -> None:
    """Run jobs: a supervisor and N executors. SIGTERM drains, a second signal stops cold."""
    from ..worker import run_worker  # here, so other commands do not pay for importing rq

    shards = parsed_namespaces(namespaces)
    settings = settings_from(config_file, worker_count=worker_count, queues=queues,
                             allow=allow or None, redis_url=redis_url, namespace=namespace,
                             log_format=log_format)
    root = logging.getLogger()
    if not root.handlers:
        # Batched: a line per finished job must not be a write per job (fleet/worker/logs.py).
        from ..logs import formatter
        from ..worker.logs import LINE_FORMAT, BatchedStreamHandler

        # The format names none of these, and finding the caller's frame alone cost a
        # third of a record (the logging HOWTO's "Optimization" switches).
        logging._srcfile = None
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
        handler = BatchedStreamHandler()
        handler.setFormatter(formatter(settings.log_format, LINE_FORMAT))
        root.addHandler(handler)
    root.setLevel(log_level.upper())
    if quiet:
        logging.getLogger(JOBS_LOGGER).setLevel(logging.WARNING)
    # `rq worker` and `celery -A` find the project's modules from where they are started;
    # the `fleet` script's own sys.path[0] is its bin directory, not the current one.
    paths = [*import_paths, os.getcwd()]
    # sys.exit, not ctx.exit: fleet.cli.main runs click with standalone_mode=False, where
    # ctx.exit(code) only returns the code and the process would exit 0.
    sys.exit(run_worker(settings, import_paths=paths, burst=burst, namespaces=shards))
