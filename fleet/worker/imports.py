"""Finding a job's function: the allow-list, the import, and errors that say what went wrong.

rq's ``import_attribute`` is not used: it catches every ImportError while it looks for the
module and then says only ``Invalid attribute name: x``, which hides the one thing a user needs
(which module could not be found, and from where). The walk below keeps rq's forms
(``pkg.mod.fn``, ``pkg.mod:fn``, ``pkg.mod:Class.method``, ``pkg.mod.Class.method``) and says
why an import failed: a module not found on ``sys.path`` (or a module it imports), a syntax
error, or a missing attribute. Those cannot succeed by running the job again, so they are
final (``JobRejected``). A module that raises something else while it is imported (it reads a
file, connects to a database) fails an ordinary, retried attempt.

A function added to a module after the worker imported it is found without a restart: on a
missing attribute the module is reloaded once (``importlib.reload``) and the lookup tried
again; later misses reload it again only when its file changed since.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any, cast

from ..errors import AttributeMissing, BadMessage, ModuleMissing, NotAllowed

ALWAYS_ALLOWED = ("fleet.demo",)



class AllowList:
    """Modules whose functions may run: ``pkg`` allows ``pkg`` and everything inside it."""

    def __init__(self, modules: Iterable[str] = ()) -> None:
        names = {name.strip() for name in modules if name.strip()} | set(ALWAYS_ALLOWED)
        self.modules = tuple(sorted(names))

    def allows(self, module: str) -> bool:
        return any(module == name or module.startswith(name + ".") for name in self.modules)

    def __str__(self) -> str:
        return ", ".join(self.modules)


def add_import_paths(paths: Iterable[str]) -> list[str]:
    """Put ``paths`` (absolute) at the front of ``sys.path``, the first one first, as
    ``rq worker --path`` does. Returns the entries added."""
    added: list[str] = []
    for path in reversed([os.path.abspath(p) for p in paths]):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
        added.insert(0, path)
    return added


def split_func(func: str) -> tuple[str, str]:
    """``("pkg.mod", "fn")`` from ``"pkg.mod:fn"`` or ``"pkg.mod.fn"``."""
    if ":" in func:
        module, _, attribute = func.partition(":")
    else:
        module, _, attribute = func.rpartition(".")
    return module, attribute


def resolve(func: str, allow: AllowList) -> Callable[..., Any]:
    """The callable named by ``func``, imported only if its module is allowed.

    Raises:
        BadMessage: ``func`` is malformed or does not name a callable.
        NotAllowed: its module is outside the allow-list, or the path walks through an
            attribute that is a module (``allowed.mod.os.system``).
        ModuleMissing, AttributeMissing: see the module docstring.
        Exception: whatever else importing the module raises.
    """
    module_name, attribute = split_func(func)
    if not module_name or not attribute or "" in module_name.split("."):
        # An empty part (".mod", "pkg..mod") would be a relative import, or no module at all.
        raise BadMessage(f"func {func!r} must be 'module:function' or 'module.function'")
    if not allow.allows(module_name):
        raise NotAllowed(f"module {module_name} is not in the worker's allow-list ({allow})")
    module, rest = import_module(module_name, allow if ":" not in func else None)
    path = [*rest, *attribute.split(".")]
    hidden = next((name for name in path if name.startswith("__")), None)
    if hidden is not None:
        # Module internals lead out of the allow-list without a module hop:
        # ``allowed:__loader__.load_module`` imports any module, ``__builtins__`` holds eval.
        raise NotAllowed(f"{func} reaches {hidden}: a job's function may not be a "
                         f"double-underscore attribute or be found through one")
    target = lookup(module, path)
    _refuse_module_hops(module, path, allow)
    if not callable(target) or isinstance(target, types.ModuleType):
        raise BadMessage(f"{func} is not a function")
    return cast("Callable[..., Any]", target)


def import_module(name: str, shorten: AllowList | None = None,
                  ) -> tuple[types.ModuleType, list[str]]:
    """The module ``name``, and the attribute names cut from its end: with ``shorten``
    (``pkg.mod.Class.method``) a name that is no module is tried one dot shorter, as long as
    the shorter name is still allowed.

    Raises:
        ModuleMissing: see the module docstring.
        NotAllowed: the shorter module is outside the allow-list.
    """
    bits = name.split(".")
    rest: list[str] = []
    while True:
        current = ".".join(bits)
        if shorten is not None and not shorten.allows(current):
            raise NotAllowed(f"module {current} is not in the worker's allow-list ({shorten})")
        try:
            return importlib.import_module(current), rest
        except ModuleNotFoundError as exc:
            if not (shorten is not None and exc.name == current and len(bits) > 1):
                raise ModuleMissing(_not_found(name, exc)) from None
            rest.insert(0, bits.pop())
        except SyntaxError as exc:
            raise ModuleMissing(f"module {name} cannot be imported: SyntaxError in "
                                f"{exc.filename} line {exc.lineno}: {exc.msg}") from None


def _not_found(name: str, exc: ModuleNotFoundError) -> str:
    missing = exc.name or "?"
    where = "sys.path: " + os.pathsep.join(sys.path)
    if name == missing or name.startswith(missing + "."):
        return (f"module {name} not found: no module named {missing!r} ({where}; add the "
                f"project's directory with --path DIR, or run the worker from it)")
    return (f"module {name} cannot be imported: it imports {missing!r}, which is not "
            f"installed for this worker ({exc}; {where})")


def lookup(module: types.ModuleType, path: list[str]) -> Any:
    """``module.a.b`` for ``path == ["a", "b"]``, reloading the module once when a name is
    missing (see ``_changed_on_disk``).

    Raises:
        AttributeMissing: some name along the path is missing.
    """
    try:
        return _walk(module, path)
    except AttributeMissing:
        if not _changed_on_disk(module):
            raise
    return _walk(importlib.reload(module), path)


def _walk(module: types.ModuleType, path: list[str]) -> Any:
    owner: Any = module
    for depth, name in enumerate(path):
        try:
            owner = getattr(owner, name)
        except AttributeError:
            where = ".".join([module.__name__, *path[:depth]])
            source = f" ({module.__file__})" if depth == 0 and module.__file__ else ""
            raise AttributeMissing(
                f"{where}{source} has no attribute {name!r} (the worker reloaded the module to "
                f"look for it)") from None
    return owner


def _changed_on_disk(module: types.ModuleType) -> bool:
    """True at a module's first miss, then only when its file's mtime changed since the last
    reload: a stream of jobs naming a missing function does not re-run the module each time."""
    source = getattr(module, "__file__", None)
    if not source:
        return False
    try:
        mtime_ns = os.stat(source).st_mtime_ns
    except OSError:
        return False
    if _RELOADED_MTIME_NS.get(module.__name__) == mtime_ns:
        return False
    _RELOADED_MTIME_NS[module.__name__] = mtime_ns
    return True


_RELOADED_MTIME_NS: dict[str, int] = {}


def _refuse_module_hops(module: types.ModuleType, path: list[str], allow: AllowList) -> None:
    """The walk follows attributes, so ``tests.jobs.os.system`` would reach ``os.system``
    through ``tests.jobs``; refuse any step onto a module that is not allowed."""
    owner: Any = module
    for name in path[:-1]:
        owner = getattr(owner, name)
        if isinstance(owner, types.ModuleType) and not allow.allows(owner.__name__):
            dotted = ".".join([module.__name__, *path])
            raise NotAllowed(f"{dotted} reaches module {owner.__name__}, which is not in the "
                             f"worker's allow-list ({allow})")
