"""Settings: one frozen dataclass, filled from defaults < YAML file < FLEET_* environment < flags.

Every setting is documented in ``configs/default.yaml``. ``load_settings`` also returns where
each value came from, which ``fleet config show`` prints. A bad value raises ConfigError naming
the setting and its source, e.g. ``lease_s = -1 (from FLEET_LEASE_S): must be > 0``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError
from .flow import check_limits
from .urls import url_problem

FSYNC_POLICIES = ("always", "interval", "off")  # the one list (settings, CLI, WalOptions)

ENV_PREFIX = "FLEET_"


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with its default. Units are in the names."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "fleet"
    data_dir: str = "./fleet-data"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    fsync: str = "always"
    log_format: str = "human"  # or "json": one JSON object a line (fleet/logs.py)
    fsync_interval_ms: int = 100
    segment_bytes: int = 64 * 1024 * 1024
    snapshot_interval_s: float = 300.0
    snapshot_every_records: int = 1_000_000
    retention_s: float = 3600.0
    lease_s: float = 30.0
    task_timeout_s: float = 180.0
    max_retries: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    ready_window: int = 0
    batch_size: int = 2000
    batch_bytes: int = 32 * 1024 * 1024
    max_message_bytes: int = 64 * 1024 * 1024
    worker_count: int = 0
    queues: tuple[str, ...] = ("default",)
    allow: tuple[str, ...] = ()
    prefetch: int = 0  # 0: up to AUTO_PREFETCH while jobs are short (fleet/worker/executor.py)
    shutdown_grace_s: float = 30.0
    heartbeat_s: float = 1.0
    signing_key: str = ""
    dispatch_key: str = ""
    worker_key: str = ""
    client_key: str = ""
    signing_window_s: float = 120.0
    receipt_timeout_s: float = 30.0
    schedule_file: str = ""
    # per queue: concurrency, rate, per_key (fleet/flow.py); applied when the controller
    # starts, recorded in its log when they differ from it
    limits: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False)

    @property
    def executors(self) -> int:
        """``worker_count``, with 0 meaning one executor per CPU."""
        return self.worker_count or (os.cpu_count() or 1)


_POSITIVE = {"lease_s", "task_timeout_s", "heartbeat_s", "receipt_timeout_s", "backoff_base_s",
             "backoff_max_s", "snapshot_interval_s", "retention_s", "fsync_interval_ms",
             "segment_bytes", "batch_size", "snapshot_every_records",
             "batch_bytes", "max_message_bytes", "signing_window_s"}
_NON_NEGATIVE = {"max_retries", "ready_window", "worker_count", "shutdown_grace_s", "prefetch"}
_CHOICES = {"fsync": FSYNC_POLICIES, "log_format": ("human", "json")}
_FLAG_NAMES = {"worker_count": "--count"}


def setting_names() -> list[str]:
    return [f.name for f in fields(Settings)]


def load_settings(flags: Mapping[str, Any] | None = None, config_file: str | None = None,
                  env: Mapping[str, str] | None = None) -> tuple[Settings, dict[str, str]]:
    """Build Settings from every layer. Returns the settings and each value's source.

    ``flags`` holds only what the user passed (None values are ignored).

    Raises:
        ConfigError: a file that cannot be read, an unknown key, or a bad value.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources = dict.fromkeys(setting_names(), "default")
    config_file = config_file or (flags or {}).get("config") or env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        for name, raw in _read_yaml(config_file).items():
            values[name] = _coerce(name, raw, f"{config_file}")
            sources[name] = f"file {config_file}"
    for name in setting_names():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw, f"{ENV_PREFIX}{name.upper()}")
            sources[name] = f"env {ENV_PREFIX}{name.upper()}"
    for name, raw in (flags or {}).items():
        if name in sources and raw is not None and raw != ():
            flag = _FLAG_NAMES.get(name, f"--{name.replace('_', '-')}")
            values[name] = _coerce(name, raw, flag)
            sources[name] = "flag"
    return Settings(**values), sources


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of setting: value")
    unknown = sorted(set(data) - set(setting_names()))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return data


def _coerce(name: str, raw: Any, source: str) -> Any:
    if name == "limits":
        return _limits(raw, source)
    field_default = {f.name: f.default for f in fields(Settings)}[name]
    try:
        value = _convert(raw, field_default)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} = {_shown(name, raw)!r} (from {source}): expected "
                          f"{_type_name(field_default)}") from None
    problem = _check(name, value)
    if problem:
        raise ConfigError(f"{name} = {_shown(name, raw)!r} (from {source}): {problem}")
    return value


def _limits(raw: Any, source: str) -> dict[str, dict[str, Any]]:
    """The ``limits`` section: queue -> its limits (JSON text in the environment)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ConfigError(f"limits (from {source}) must be a JSON object of queue: "
                              "limits") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"limits (from {source}) must be a mapping of queue: limits")
    try:
        return {queue: check_limits(queue, limits) for queue, limits in raw.items()}
    except ConfigError as exc:
        raise ConfigError(f"{exc} (from {source})") from None


def _shown(name: str, raw: Any) -> Any:
    """A value as an error message may show it: secrets masked."""
    if name == "signing_key":
        return SECRET
    if name == "redis_url" and isinstance(raw, str):
        return mask_url(raw)
    return raw


def _convert(raw: Any, default: Any) -> Any:
    if isinstance(default, tuple):
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        flat = [part.strip() for item in items for part in str(item).split(",")]
        return tuple(part for part in flat if part)
    if isinstance(default, bool):
        return str(raw).lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(raw)
        return int(raw)
    if isinstance(default, float):
        if isinstance(raw, bool):
            raise ValueError(raw)
        return float(raw)
    if not isinstance(raw, str):
        raise TypeError(raw)
    return raw


def _check(name: str, value: Any) -> str:
    if name in _POSITIVE and not value > 0:
        return "must be > 0"
    if name in _NON_NEGATIVE and value < 0:
        return "must be >= 0"
    if name in _CHOICES and value not in _CHOICES[name]:
        return f"must be one of {', '.join(_CHOICES[name])}"
    if name == "redis_url" and url_problem(value):
        return url_problem(value)
    if name == "metrics_port" and not 0 <= value <= 65535:
        return "must be a port number (0-65535)"
    if name == "namespace" and (not value or any(c in value for c in "{}: \t")):
        return "must be non-empty without braces, colons or spaces"
    return ""


def _type_name(default: Any) -> str:
    if isinstance(default, tuple):
        return "a comma-separated list"
    return {int: "an integer", float: "a number", str: "a string"}.get(type(default), "a value")


SECRET = "***"
SECRET_SETTINGS = ("signing_key", "dispatch_key", "worker_key", "client_key")


def describe(settings: Settings, sources: dict[str, str]) -> list[tuple[str, Any, str]]:
    """``(name, value, source)`` for every setting, for ``fleet config show``; secrets (the
    Redis URL's password, every signing key) are masked as ``***``: whoever reads a terminal
    or a log must not learn them."""
    values = dataclasses.asdict(settings)
    values["redis_url"] = mask_url(settings.redis_url)
    for name in SECRET_SETTINGS:
        if values[name]:
            values[name] = SECRET
    return [(name, values[name], sources[name]) for name in setting_names()]


def mask_url(url: str) -> str:
    """``url`` with its password (``user:password@`` or ``?password=``) replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, host = netloc.rsplit("@", 1)
        user, has_password, _ = credentials.partition(":")
        netloc = f"{user}:{SECRET}@{host}" if has_password else \
            (f"{SECRET}@{host}" if user and parts.scheme != "unix" else netloc)
    query = "&".join(f"{key}={SECRET}" if key.lower() == "password" else item
                     for item in parts.query.split("&") if item
                     for key in [item.partition("=")[0]])
    # Spelt out rather than urlunsplit, which turns unix:///path into unix:/path.
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))
