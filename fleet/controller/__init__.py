"""The controller: enqueue (intake), dispatch, reconcile, control, all in one loop.

``intake.py`` → ``dispatch.py`` → ``reconcile.py`` follow a job's path; ``fence.py`` keeps the
single-writer lease, ``heal.py`` re-dispatches jobs whose messages were lost, ``loop.py`` ties
them together around the journal's group commit.
"""

from .loop import Controller

__all__ = ["Controller"]
