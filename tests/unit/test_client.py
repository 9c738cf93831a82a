"""fleet.Client built without arguments takes the same settings as the CLI."""

from __future__ import annotations

import pytest

import fleet
from fleet.errors import ConfigError


def test_client_honours_fleet_namespace_and_redis_url(monkeypatch):
    """FLEET_NAMESPACE and FLEET_REDIS_URL reach fleet.Client(); arguments still win."""
    monkeypatch.setenv("FLEET_NAMESPACE", "shop")
    monkeypatch.setenv("FLEET_REDIS_URL", "redis://example.invalid:6390/3")
    client = fleet.Client()
    assert client.namespace == "shop" and client.keys.intake == "{shop}:intake"
    kwargs = client.wire.client.connection_pool.connection_kwargs
    assert kwargs["host"] == "example.invalid" and kwargs["port"] == 6390
    assert fleet.Client(namespace="other").namespace == "other"


def test_client_refuses_a_bad_environment_value(monkeypatch):
    """A bad FLEET_* value is a ConfigError naming it, as in the CLI."""
    monkeypatch.setenv("FLEET_NAMESPACE", "a:b")
    with pytest.raises(ConfigError, match="FLEET_NAMESPACE"):
        fleet.Client()
