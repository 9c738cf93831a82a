"""Redis URLs: which kind of Redis a URL names, read without connecting (docs/scaling.md).

    redis://[user:password@]host:port[/db]           one server (rediss:// for TLS)
    unix://[user:password@]/path/to/redis.sock[?db=N]
    redis+sentinel://[user:password@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]
    redis+cluster://[user:password@]HOST:PORT[,HOST:PORT...]

``rediss+sentinel://`` and ``rediss+cluster://`` are the TLS forms. The credentials are the
data servers' (a Sentinel group's master and replicas, a Cluster's nodes); sentinels are
asked without them. A missing port is 26379 for a sentinel and 6379 for a cluster node. The
``ssl_*`` options of redis-py's own URLs (``?ssl_cert_reqs=none``, ``ssl_ca_certs=…``) are
taken in the TLS forms; any other option is refused.

Pure: no redis import here, so the settings can check a URL (config.py) and the transport can
connect to it (transport/connect.py) from the same reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ConfigError

SINGLE, SENTINEL, CLUSTER = "single", "sentinel", "cluster"
SCHEMES = {"redis": SINGLE, "rediss": SINGLE, "unix": SINGLE,
           "redis+sentinel": SENTINEL, "rediss+sentinel": SENTINEL,
           "redis+cluster": CLUSTER, "rediss+cluster": CLUSTER}
DEFAULT_PORTS = {SENTINEL: 26379, CLUSTER: 6379}
TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile",
               "ssl_check_hostname")


@dataclass(frozen=True)
class RedisTarget:
    """What a URL names. For a single server, ``url`` is all redis-py needs."""

    kind: str
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_options: dict[str, str] = field(default_factory=dict)


class _Bad(ValueError):
    """What is wrong with a URL, as the end of a one-line message."""


def parse_redis_url(url: str) -> RedisTarget:
    """Read ``url`` (any form above).

    Raises:
        ConfigError: an unknown scheme, a bad host list, port, service or db (one line,
            the password masked).
    """
    try:
        return _parse(url)
    except _Bad as exc:
        from .config import mask_url  # config imports this module to check its redis_url
        raise ConfigError(f"invalid Redis URL {mask_url(url)!r}: {exc}") from None


def url_problem(url: str) -> str:
    """What is wrong with ``url`` ("" if nothing), for a setting's error message."""
    try:
        _parse(url)
    except _Bad as exc:
        return str(exc)
    return ""


def _parse(url: str) -> RedisTarget:
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    kind = SCHEMES.get(scheme)
    if kind is None:
        raise _Bad("must start with " + ", ".join(f"{s}://" for s in SCHEMES))
    if kind == SINGLE:
        return RedisTarget(SINGLE, url)
    parts = urlsplit(url)
    credentials, _, hostlist = parts.netloc.rpartition("@")
    user, _, password = credentials.partition(":")
    return RedisTarget(
        kind, url, hosts=_hosts(hostlist, DEFAULT_PORTS[kind]),
        service=_service(parts.path) if kind == SENTINEL else "",
        db=_db(parts.path, kind), username=unquote(user) or None,
        password=unquote(password) or None if credentials else None,
        tls=scheme.startswith("rediss"), tls_options=_options(parts.query, scheme))


def _hosts(hostlist: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for entry in hostlist.split(","):
        entry = entry.strip()
        if entry.startswith("["):  # [IPv6]:port
            host, _, rest = entry[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else rest
        else:
            host, _, port_text = entry.rpartition(":") if ":" in entry else (entry, "", "")
        if not host:
            raise _Bad(f"host {entry!r} has no name")
        hosts.append((host, _port(port_text, default_port)))
    return tuple(hosts)


def _port(text: str, default_port: int) -> int:
    if not text:
        return default_port
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _Bad(f"port {text!r} is not a port number")
    return int(text)


def _service(path: str) -> str:
    service = unquote(path.strip("/").partition("/")[0])
    if not service:
        raise _Bad("names no service: add /SERVICE (the sentinels' master name)")
    return service


def _db(path: str, kind: str) -> int:
    segments = [s for s in path.split("/") if s]
    extra = segments[1:] if kind == SENTINEL else segments
    if kind == CLUSTER and extra:
        raise _Bad("a Redis Cluster has only db 0: drop the path")
    if len(extra) > 1 or (extra and not extra[0].isdigit()):
        raise _Bad(f"db {'/'.join(extra)!r} is not a number")
    return int(extra[0]) if extra else 0


def _options(query: str, scheme: str) -> dict[str, str]:
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(TLS_OPTIONS)) if scheme.startswith("rediss") \
        else sorted(options)
    if unknown:
        raise _Bad(f"option(s) {', '.join(unknown)} not understood here")
    return options


