"""Finding a job's function: import paths, errors that say why, a reload for new functions."""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from fleet.errors import AttributeMissing, BadMessage, ModuleMissing, NotAllowed
from fleet.worker.imports import (
    AllowList,
    add_import_paths,
    resolve,
)
from fleet.worker.runner import Runner
from fleet.worker.wire import Identity


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A fresh package directory on sys.path; returns (dir, unique package name)."""
    name = f"proj_{uuid.uuid4().hex[:8]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path, name
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def write(project_dir, relative: str, source: str) -> None:
    path = project_dir / relative
    path.write_text(source)
    # A new mtime even within one clock tick, so the import system sees the edit.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))


def run_ack(func: str, allow: str) -> dict:
    import orjson

    runner = Runner(Identity("h:1:aa", "h"), AllowList([allow]), 5.0)
    raw, _ = runner.run({"id": "j", "n": 1, "f": func, "a": [1, 2]})
    return orjson.loads(raw)


def test_missing_package_is_final_and_names_module_and_sys_path(project):
    """A module that is not on sys.path: fin, the module, the missing name and sys.path."""
    ack = run_ack("nosuchpkg_x.tasks:add", "nosuchpkg_x")
    assert ack["o"] == "fail" and ack["fin"] is True
    assert ack["e"].startswith("ModuleMissing: module nosuchpkg_x.tasks not found: no module "
                               "named 'nosuchpkg_x'")
    assert "sys.path: " in ack["e"] and "--path" in ack["e"]


def test_missing_dependency_of_the_module_is_named(project):
    """The module exists but imports something not installed: that name is given."""
    directory, name = project
    write(directory, f"{name}/tasks.py", "import not_installed_dep_q\n")
    with pytest.raises(ModuleMissing, match="imports 'not_installed_dep_q'"):
        resolve(f"{name}.tasks:add", AllowList([name]))


def test_syntax_error_in_the_module_is_final(project):
    """A module that does not compile cannot import on a retry either."""
    directory, name = project
    write(directory, f"{name}/tasks.py", "def add(:\n")
    ack = run_ack(f"{name}.tasks:add", name)
    assert ack["fin"] is True and "SyntaxError in" in ack["e"]


def test_module_raising_while_imported_is_an_ordinary_failure(project):
    """A module whose code raises (a database down at import) is retried: no fin."""
    directory, name = project
    write(directory, f"{name}/tasks.py", "raise RuntimeError('db down')\n")
    ack = run_ack(f"{name}.tasks:add", name)
    assert ack["o"] == "fail" and "fin" not in ack and ack["e"] == "RuntimeError: db down"


def test_function_added_after_the_first_import_is_found_without_a_restart(project):
    """A new function in an already imported module: the module is reloaded and it runs."""
    directory, name = project
    write(directory, f"{name}/tasks.py", "def add(a, b):\n    return a + b\n")
    assert resolve(f"{name}.tasks:add", AllowList([name]))(1, 2) == 3
    write(directory, f"{name}/tasks.py",
          "def add(a, b):\n    return a + b\n\ndef mul(a, b):\n    return a * b\n")
    assert run_ack(f"{name}.tasks:mul", name)["r"] == 2


def test_missing_function_names_the_attribute_and_the_file(project):
    """Still missing after the reload: AttributeMissing with the module's file."""
    directory, name = project
    write(directory, f"{name}/tasks.py", "def add(a, b):\n    return a + b\n")
    with pytest.raises(AttributeMissing, match=r"tasks\.py\) has no attribute 'sub'"):
        resolve(f"{name}.tasks.sub", AllowList([name]))


def test_dotted_class_method_form_still_resolves(project):
    """pkg.mod.Class.method (no colon) finds the module by trying shorter names."""
    directory, name = project
    write(directory, f"{name}/tasks.py",
          "class Maths:\n    @staticmethod\n    def double(x):\n        return 2 * x\n")
    assert resolve(f"{name}.tasks.Maths.double", AllowList([name]))(4) == 8


def test_shorter_module_outside_the_allow_list_is_refused(project):
    """--allow pkg.tasks.Maths does not reach a function of pkg.tasks by shortening."""
    directory, name = project
    write(directory, f"{name}/tasks.py",
          "class Maths:\n    @staticmethod\n    def double(x):\n        return 2 * x\n")
    with pytest.raises(NotAllowed, match=f"module {name}.tasks is not in"):
        resolve(f"{name}.tasks.Maths.double", AllowList([f"{name}.tasks.Maths"]))


def test_add_import_paths_puts_them_first_in_order(tmp_path, monkeypatch):
    """Each path once, absolute, at the front of sys.path, the first given first."""
    monkeypatch.setattr(sys, "path", ["/usr/lib/python", str(tmp_path / "b")])
    add_import_paths([str(tmp_path / "a"), str(tmp_path / "b")])
    assert sys.path == [str(tmp_path / "a"), str(tmp_path / "b"), "/usr/lib/python"]


def test_double_underscore_attributes_are_refused():
    """__loader__.load_module would import any module; __builtins__ holds eval: refused."""
    allow = AllowList(["tests.jobs"])
    for func in ("tests.jobs:__loader__.load_module", "tests.jobs:__builtins__.get",
                 "tests.jobs.__class__"):
        with pytest.raises(NotAllowed, match="double-underscore"):
            resolve(func, allow)


@pytest.mark.parametrize("func", [".jobs:add", "tests..jobs:add", "tests.:add"])
def test_module_name_with_an_empty_part_is_a_bad_message(func):
    """Relative or empty module names are refused before any import is tried."""
    with pytest.raises(BadMessage, match="must be 'module:function'"):
        resolve(func, AllowList(["", "tests", ".jobs"]))
