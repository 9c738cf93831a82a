"""Print fleet's largest modules, classes and functions, and those over the limits the code
keeps: modules <= 400 lines, classes <= 250, functions <= 50.

    python scripts/code_sizes.py [--top N] [--check]

With ``--check`` it exits 1 when anything is over its limit.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

LIMITS = {"module": 400, "class": 250, "function": 50}


def measure(root: Path) -> dict[str, list[tuple[int, str]]]:
    """Line counts of every module, class and function under ``root``, largest first."""
    sizes: dict[str, list[tuple[int, str]]] = {kind: [] for kind in LIMITS}
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        sizes["module"].append((len(text.splitlines()), str(path)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                kind = "class"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                kind = "function"
            else:
                continue
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            sizes[kind].append((lines, f"{path}:{node.lineno} {node.name}"))
    for items in sizes.values():
        items.sort(reverse=True)
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=3, help="largest of each kind to show")
    parser.add_argument("--check", action="store_true", help="exit 1 if any is over its limit")
    parser.add_argument("root", nargs="?", default="fleet")
    args = parser.parse_args()
    over = 0
    for kind, items in measure(Path(args.root)).items():
        limit = LIMITS[kind]
        above = [item for item in items if item[0] > limit]
        over += len(above)
        plural = "classes" if kind == "class" else kind + "s"
        print(f"{plural}: {len(items)}, {len(above)} over {limit} lines")
        for lines, where in above or items[:args.top]:
            print(f"  {lines:5d}  {where}")
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
