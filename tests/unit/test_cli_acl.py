"""`fleet acl`: the rule each role gets, and bad input refused in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fleet.cli.acl import ROLES, acl_rule


def test_each_role_gets_only_its_namespace_keys_and_its_commands():
    """Every rule resets the user, names only {ns}: key patterns and starts from -@all."""
    for role in ROLES:
        parts = acl_rule(role, "jobs", "u", "pw").split()
        assert parts[:6] == ["ACL", "SETUSER", "u", "reset", "on", ">pw"]
        patterns = [p for p in parts if p.startswith("~")]
        assert patterns and all(p.startswith("~{jobs}:") for p in patterns)
        assert "-@all" in parts and not any(p.startswith("+@") for p in parts)
    assert "~{jobs}:intake" not in acl_rule("worker", "jobs", "u")
    assert "~{jobs}:acks" not in acl_rule("client", "jobs", "u")


def test_without_a_password_the_user_has_none_and_glob_characters_are_escaped():
    """No password clause without --password; a namespace with * or [ matches literally."""
    rule = acl_rule("client", "a*[b", "u")
    assert ">" not in rule and "~{a\\*\\[b}:intake" in rule


@pytest.mark.parametrize("args, message", [
    (["--role", "admin"], "Invalid value for '--role'"),
    (["--role", "worker", "--namespace", "a:b"], "namespace = 'a:b'"),
    (["--role", "worker", "--user", "two words"], "must be non-empty without spaces"),
    (["--role", "worker", "--password", "a b"], "must not contain spaces"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(args, message):
    """Unknown role, bad namespace, user or password: exit 2, no traceback."""
    done = subprocess.run([sys.executable, "-m", "fleet", "acl", *args], capture_output=True,
                          text=True)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
