"""The data directory's identity file (fleet/wal/identity.py)."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from fleet.cli import app
from fleet.errors import WalError
from fleet.wal import open_log
from fleet.wal.identity import identity_path, load_or_create


def test_identity_is_created_once_and_then_stays_the_same(tmp_path):
    """The first call writes IDENTITY atomically (no temp file left); later calls read it."""
    first = load_or_create(str(tmp_path))
    assert len(first) == 32 and load_or_create(str(tmp_path)) == first
    assert sorted(os.listdir(tmp_path)) == ["IDENTITY"]


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b'{"id": ""}', b'{"id": 7}'])
def test_unreadable_identity_is_refused_with_one_line(tmp_path, content):
    """A damaged identity is never replaced silently: one line saying how to recover."""
    with open(identity_path(str(tmp_path)), "wb") as handle:
        handle.write(content)
    with pytest.raises(WalError, match="--take-over") as caught:
        load_or_create(str(tmp_path))
    assert "\n" not in str(caught.value)


def test_recovery_and_verify_ignore_the_identity(tmp_path):
    """IDENTITY beside the log changes nothing for recovery or `fleet wal verify`."""
    load_or_create(str(tmp_path))
    open_log(str(tmp_path)).close()
    result = CliRunner().invoke(app, ["wal", "verify", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
