"""Pausing Python's cyclic garbage collector while a process builds many objects that all
live on: a recovered job table, or the jobs of a big file that one command sends."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The collector off inside the block, back as it was after it.

    Each full collection walks every tracked object still alive, and objects that pile up
    make the collector run again and again over a heap that holds no garbage: recovery took
    nearly twice as long with it, and ``fleet enqueue --file`` spent a fifth of its CPU in
    it (docs/performance.md, Round 8). It is process-wide state, so only code that owns its
    process pauses it: the controller's recovery and the CLI, not a library call such as
    ``Client.enqueue_many``.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            # Freeze + unfreeze moves every tracked object to the oldest generation (two list
            # splices), so the first young collection does not scan all of them at once.
            # Skipped if someone froze objects on purpose: unfreeze would undo that.
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()
