"""docs/testing.md's examples, run by pytester: the pytest plugin's fixtures (fleet_inline,
fleet_local, fleet_client) found through the pytest11 entry point, in a project of their own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
_FILE_BLOCK = re.compile(r"^```\w+ file=(\S+)[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def doc_files(text: str) -> dict[str, str]:
    """The blocks of a doc whose fence names a file (```python file=NAME)."""
    return {name: code for name, code in _FILE_BLOCK.findall(text)}


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_testing_doc_examples_pass_with_the_plugins_fixtures(pytester):
    """The docs' project (tasks, pytest.ini, tests) passes: 4 tests, inline and real."""
    files = doc_files(DOC.read_text(encoding="utf-8"))
    assert {"shop.py", "pytest.ini", "test_shop.py"} <= set(files)
    for name, code in files.items():
        (pytester.path / name).write_text(code)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=200)
    result.assert_outcomes(passed=4)


def test_inline_fixture_restores_the_default_client(pytester):
    """fleet_inline is the tasks' default client during the test and not after it."""
    pytester.makepyfile(jobs="""
        import fleet

        @fleet.task
        def add(a, b):
            return a + b
    """, test_it="""
        import sys

        from jobs import add

        tasks = sys.modules["fleet.task"]

        def test_inside(fleet_inline):
            assert tasks.default_client() is fleet_inline
            assert add.enqueue(2, 3).result() == 5

        def test_after():
            assert tasks._default_client is None
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
