"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import click

from ..config import Settings, load_settings


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--redis-url``, ``--namespace`` and ``--config`` (each also from FLEET_*)."""

    @click.option("--redis-url", default=None, help="Redis URL (FLEET_REDIS_URL; default "
                  "redis://127.0.0.1:6379/0). redis://, rediss:// (TLS), user:password@ work; "
                  "a private CA: rediss://host:port/0?ssl_ca_certs=/path/ca.crt.")
    @click.option("--namespace", default=None, help="Namespace (FLEET_NAMESPACE; default fleet).")
    @click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False),
                  help="YAML settings file (FLEET_CONFIG).")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def settings_from(config_file: str | None, **flags: Any) -> Settings:
    """Settings from every layer; ``flags`` are the command's own options (None = not given)."""
    settings, _ = load_settings(flags, config_file=config_file)
    return settings


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)

_open_clients: list[_Closable] = []


def keep_open(client: C) -> C:
    """Hold ``client`` until ``close_clients``: its connections are then closed at a moment
    the entry point chooses (see ``fleet.cli.main``), not whenever it is collected."""
    _open_clients.append(client)
    return client


def close_clients() -> None:
    """Close every client a command opened."""
    while _open_clients:
        _open_clients.pop().close()
