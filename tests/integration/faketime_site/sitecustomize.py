"""Loaded (through PYTHONPATH) into a controller run under libfaketime by test_clock_step.py.

libfaketime 0.9.10 with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` makes ``clock_nanosleep`` on the
monotonic clock, which ``time.sleep`` uses, fail with EINVAL; a select() timeout sleeps the
same without it. Nothing else of the process is changed.
"""

import select
import time


def _sleep(seconds: float) -> None:
    select.select([], [], [], max(0.0, seconds))


time.sleep = _sleep
