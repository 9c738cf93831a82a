"""docs/redis-keys.md and the table in fleet/keys.py name exactly the keys ``Keys`` builds:
the key layout is declared once, in code, and the two tables cannot drift from it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import fleet.keys
from fleet.keys import Keys

ROOT = Path(__file__).resolve().parents[2]


def _built() -> set[str]:
    """Every key pattern ``Keys("ns")`` builds, a placeholder ``<>`` for each argument."""
    keys, patterns = Keys("ns"), set()
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_") or name in ("namespace", "prefix"):
            continue
        if isinstance(member, property):
            patterns.add(getattr(keys, name))
        elif inspect.isfunction(member):
            arguments = len(inspect.signature(member).parameters) - 1  # not self
            patterns.add(getattr(keys, name)(*["<>"] * arguments))
    return patterns


def _named(text: str) -> set[str]:
    """Key patterns named in a table's first column, placeholders as ``<>``."""
    found = re.findall(r"^\|? *`?(\{ns\}:[^`| ]+(?: [a-z]+>)?)`?", text, re.MULTILINE)
    return {re.sub(r"<[^>]*>", "<>", key) for key in found}


def test_the_doc_table_names_every_key_and_no_other():
    doc = (ROOT / "docs" / "redis-keys.md").read_text()
    assert _named(doc) == _built()


def test_the_module_table_names_every_key_and_no_other():
    assert _named(fleet.keys.__doc__ or "") == _built()
