"""Operational commands; filled in by the controller, worker and client commands."""

from __future__ import annotations

import click


def register(app: click.Group) -> None:
    """Add the operational commands to ``app``."""
    from .worker import worker

    app.add_command(worker)
