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


def namespaces_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--namespaces s0,s1,...``: sharded namespaces, instead of ``--namespace``."""
    return click.option(
        "--namespaces", default=None, envvar="FLEET_NAMESPACES", metavar="NS,NS,...",
        help="Sharded namespaces, comma-separated, in the same order everywhere "
             "(FLEET_NAMESPACES; docs/scaling.md). Overrides --namespace.")(func)


def parsed_namespaces(text: str | None) -> tuple[str, ...]:
    """The ``--namespaces`` value checked (empty when not given).

    Raises:
        ConfigError: an empty list, a name twice or an invalid name.
    """
    from ..shards import parse_namespaces

    return parse_namespaces(text) if text is not None else ()


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
