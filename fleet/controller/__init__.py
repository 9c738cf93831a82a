"""The controller: enqueue (intake), dispatch, reconcile, control, all in one loop.

``intake.py`` → ``dispatch.py`` → ``reconcile.py`` follow a job's path; ``fence.py`` keeps the
single-writer lease, ``heal.py`` re-dispatches jobs whose messages were lost, ``liveness.py``
reads the workers' heartbeats, ``control.py`` answers the CLI and the API through a ``Desk``,
``commit.py`` is the group commit, ``housekeeping.py`` the work on its own cadence, and
``loop.py`` ties them together in the four steps of an iteration.
"""

from .loop import Controller

__all__ = ["Controller"]
