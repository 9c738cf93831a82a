"""Fixtures for the real-process tests."""

from __future__ import annotations

import pytest

from fleet.testing.cluster import LocalFleet

from .helpers import FAST_ENV


@pytest.fixture()
def local(redis_url, tmp_path):
    """A LocalFleet on the session's private Redis with fast timings, stopped after the test."""
    fleet = LocalFleet(redis_url, workdir=str(tmp_path), env=dict(FAST_ENV))
    yield fleet
    fleet.stop_all()
