"""An executor's process: bound to its supervisor's life, its signals set, then the loop
(executor.py). The supervisor forks it with SIGTERM and SIGINT blocked (pool.py)."""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Any

from ..config import Settings
from ..transport.pipe import worker_client
from .executor import Executor, build_executor
from .logs import flush_logs
from .wire import Identity, worker_log

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
