"""An executor's process: bound to its supervisor's life, its signals set, then the loop
(executor.py), built from the worker's settings (``build_executor``). The supervisor forks
it with SIGTERM and SIGINT blocked (pool.py)."""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Any

from ..config import Settings
from ..keys import TAKEN_TTL_S, Keys
from ..transport.pipe import RedisClient, worker_client
from .executor import Executor
from .logs import flush_logs
from .runner import Runner
from .wire import Identity, WorkerLog, worker_log

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its supervisor dies (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the supervisor's own cleanup has to do
    if os.getppid() != parent_pid:
        os._exit(1)  # the supervisor died before prctl took effect


def executor_main(settings: Settings, identity: Identity, slot: int, channel: Any,
                  parent_pid: int) -> None:
    """Entry point of an executor process, forked by the supervisor with SIGTERM and SIGINT
    blocked so that neither reaches the supervisor's handlers inherited by the fork."""
    die_with_parent(parent_pid)
    signal.set_wakeup_fd(-1)
    log = worker_log(Executor.__module__, f"{identity.worker_id}/e{slot}")  # its loop's lines
    client = worker_client(settings.redis_url, settings.namespace)
    executor = build_executor(settings, identity, client, channel, log, slot)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    signal.signal(signal.SIGTERM, executor.stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        executor.run()
    finally:
        flush_logs()  # a forked process ends in os._exit: no logging.shutdown to do it


def build_executor(settings: Settings, identity: Identity, client: RedisClient,
                   channel: Any = None, log: WorkerLog | None = None, slot: int = 0
                   ) -> Executor:
    """An Executor configured from ``settings``."""
    runner = Runner.from_settings(settings, identity)
    return Executor(client, Keys(settings.namespace), settings.queues, runner,
                    settings.prefetch, channel, log, hold_limit_s=hold_limit_s(settings),
                    slot=slot, taken_ttl_s=max(TAKEN_TTL_S, 4 * settings.lease_s))


def hold_limit_s(settings: Settings) -> float:
    """How long a prefetched message may wait unstarted: half a heartbeat period, so that it
    is running (and named by the next heartbeat) or handed back before a heal, which
    re-dispatches what no worker names after two periods, could take it for lost; and never
    more than half a lease."""
    return min(settings.heartbeat_s, settings.lease_s) / 2
