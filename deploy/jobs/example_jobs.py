"""Example job code for the compose stack's workers.

docker-compose.yml mounts this directory (or FLEET_JOBS_DIR) at /app/jobs, which is on the
workers' PYTHONPATH, and allow-lists FLEET_ALLOW (default: this module). Enqueue with
``fleet enqueue example_jobs.add 2 3``.
"""


def add(x: float, y: float) -> float:
    return x + y
