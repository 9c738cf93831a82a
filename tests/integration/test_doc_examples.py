"""Every ```python block of README.md and docs/*.md runs, against a real controller and worker.

Blocks of one file run in order in one module (like a notebook), so later blocks use what
earlier ones defined. A block whose first line is ``# not run`` is skipped. The documented
URL ``redis://127.0.0.1:6379/0`` is replaced by a private redis-server's, and the ``FLEET_*``
environment points there too, so examples never touch a Redis on the default port. The module
is registered in ``sys.modules`` so that InlineClient (and a worker in this process) can
import the functions an example defines, by path.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

import fleet
from fleet.localredis import RedisServer
from fleet.testing.cluster import LocalFleet

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
DOCUMENTED_URL = "redis://127.0.0.1:6379/0"
SKIP_MARK = "# not run"
FAST = {"FLEET_HEARTBEAT_S": "0.2", "FLEET_LEASE_S": "5", "FLEET_BACKOFF_BASE_S": "0.05",
        "FLEET_BACKOFF_MAX_S": "0.2"}

_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)

pytestmark = pytest.mark.timeout(120, method="thread")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number of the block's first code line, code)`` of every block to run."""
    blocks = []
    for match in _BLOCK.finditer(text):
        code = match.group(1)
        if code.lstrip().startswith(SKIP_MARK):
            continue
        blocks.append((text.count("\n", 0, match.start(1)) + 1, code))
    return blocks


def _files_with_examples() -> list[Path]:
    return [path for path in DOC_FILES
            if path.exists() and python_blocks(path.read_text(encoding="utf-8"))]


@pytest.fixture(scope="module")
def doc_fleet(tmp_path_factory):
    """A controller and a worker (queues high, default) on a redis-server of their own."""
    server = RedisServer().start()
    local = LocalFleet(server.url, workdir=str(tmp_path_factory.mktemp("docs")), env=FAST)
    try:
        local.controller()
        local.worker(2, "--queues", "high,default")
        yield local
    finally:
        local.stop_all()
        server.stop()


def test_blocks_are_found_with_their_line_and_not_run_blocks_skipped():
    """The extractor returns python blocks only, with their line, minus `# not run` ones."""
    text = ("intro\n```python\nx = 1\n```\n```sh\nls\n```\n"
            "```python\n# not run\nimport missing\n```\n```python\ny = 2\n```\n")
    assert python_blocks(text) == [(3, "x = 1\n"), (13, "y = 2\n")]


@pytest.mark.integration
@pytest.mark.parametrize("path", _files_with_examples(),
                         ids=lambda path: path.relative_to(ROOT).as_posix())
def test_python_examples_in_docs_run(path, doc_fleet, monkeypatch):
    """Each example block of the file runs without error, in order."""
    for name, value in doc_fleet.environment().items():
        if name.startswith("FLEET_"):
            monkeypatch.setenv(name, value)
    module_name = "fleet_doc_" + re.sub(r"\W", "_", path.stem.lower())
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module
    try:
        for line, code in python_blocks(path.read_text(encoding="utf-8")):
            source = "\n" * (line - 1) + code.replace(DOCUMENTED_URL, doc_fleet.redis_url)
            try:
                exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102
            except Exception as exc:  # noqa: BLE001 - reported with the block's place
                pytest.fail(f"{path.relative_to(ROOT)}, block at line {line}: "
                            f"{type(exc).__name__}: {exc}")
    finally:
        sys.modules.pop(module_name, None)
        fleet.configure(None)
