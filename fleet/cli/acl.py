"""``fleet acl --role ROLE``: the Redis ``ACL SETUSER`` rule of least privilege for one role.

Redis 6.2 rules (the oldest server fleet supports): key patterns ``~{ns}:...`` and allowed
commands ``+rpush``. 6.2 has no per-key read/write selectors (``%R~`` / ``%W~`` are 7.0), so a
role's commands apply to all of its key patterns: a client that may RPUSH intake may also
RPUSH its receipt keys. docs/security.md says what each role can still do and what the seals
add on top.
"""

from __future__ import annotations

import click

from ..config import load_settings
from ..errors import ConfigError
from ..keys import Keys

# Key suffixes under the namespace, and commands, each role uses (docs/redis-keys.md).
ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "controller": (
        ("*",),
        ("lrange", "ltrim", "rpush", "lrem", "lpos", "llen", "blpop", "get", "set", "mget",
         "del", "exists", "expire", "pexpire", "pttl", "hget", "hset", "hgetall", "smembers",
         "srem", "eval", "evalsha", "script|load", "info", "ping")),
    "worker": (
        ("ready:*", "acks", "wake", "workers", "worker:*", "cancel:*", "taken:*"),
        ("lpop", "blpop", "rpush", "llen", "sadd", "srem", "set", "lmove", "lrem", "pexpire",
         "ping")),
    # Clients and the dashboard read the controller's lease (GET / EXISTS) to say at once that
    # nobody serves the namespace, rather than wait out a receipt or reply.
    "client": (
        ("intake", "receipt:*", "control", "reply:*", "wake", "controller"),
        ("rpush", "blpop", "exists", "get", "ping")),
    "dashboard": (
        ("control", "reply:*", "wake", "controller"),
        ("rpush", "blpop", "exists", "get", "ping")),
}


def acl_rule(role: str, namespace: str, user: str, password: str = "") -> str:
    """The ``ACL SETUSER`` line for ``role`` in ``namespace``.

    Without ``password`` the user is created with none, so nobody can log in as it until one
    is added (``ACL SETUSER <user> >secret``).

    Raises:
        ConfigError: unknown role, or a user name Redis would split.
    """
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if not user or any(c.isspace() for c in user):
        raise ConfigError(f"user name {user!r} must be non-empty without spaces")
    if any(c.isspace() for c in password):
        raise ConfigError("the password must not contain spaces")
    suffixes, commands = ROLES[role]
    prefix = _glob_escaped(Keys(namespace).prefix)
    parts = ["ACL", "SETUSER", user, "reset", "on"]
    parts += [f">{password}"] if password else []
    parts += [f"~{prefix}{suffix}" for suffix in suffixes]
    parts += ["resetchannels", "-@all"] + [f"+{command}" for command in commands]
    return " ".join(parts)


def _glob_escaped(text: str) -> str:
    """``text`` matched literally by a Redis key pattern (a namespace may hold ``*?[]``)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@click.command("acl")
@click.option("--role", required=True, type=click.Choice(sorted(ROLES)),
              help="Which process the Redis user is for.")
@click.option("--namespace", default=None, help="Namespace (default: from the settings).")
@click.option("--user", default=None, help="Redis user name (default: fleet-ROLE).")
@click.option("--password", default="", envvar="FLEET_ACL_PASSWORD",
              help="Password to set (default: none, so the user cannot log in until given one).")
@click.option("--config", "config_file", default=None, help="YAML settings file.")
def acl(role: str, namespace: str | None, user: str | None, password: str,
        config_file: str | None) -> None:
    """Print the Redis ACL SETUSER rule that gives ROLE what it needs and nothing more."""
    if namespace is None:
        namespace = load_settings({}, config_file=config_file)[0].namespace
    else:
        load_settings({"namespace": namespace})  # the same check as everywhere else
    click.echo(acl_rule(role, namespace, user or f"fleet-{role}", password))
