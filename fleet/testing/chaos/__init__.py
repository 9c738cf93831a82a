"""The chaos runner: prove that fleet loses nothing under faults (``make chaos``).

``python -m fleet.testing.chaos`` runs a mixed workload through real processes while it
kills and stops controllers, worker fleets and executors, empties, deletes from, rolls back and
starves Redis, and steps the controller's wall clock; then an independent checker compares
what was enqueued, what ran and what the controller recorded. docs/reliability.md describes
the run and keeps the last summary.

Modules: ``jobs`` (the job functions), ``workload`` (the mix and the enqueuer), ``faults``
(the kinds and the schedule), ``injector`` (carrying them out), ``redisfaults`` and
``fakeclock`` (the Redis and clock faults), ``checker`` (the comparison), ``runner`` (the
run), ``report`` (the table).
"""

from .runner import ChaosConfig, ChaosResult, run_chaos

__all__ = ["ChaosConfig", "ChaosResult", "run_chaos"]
