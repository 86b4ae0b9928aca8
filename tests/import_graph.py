"""The fieldlab import graph, read from the source with ``ast`` (no module is executed).

Every ``import`` / ``from ... import`` statement counts, function-level (lazy) imports included: a lazy import is
still a dependency. ``from fieldlab.x import y`` resolves to the module ``fieldlab.x.y`` when that is a module, else
to ``fieldlab.x``. Importing a module also runs every parent package's ``__init__``; :func:`closure` includes them.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def module_file(name: str) -> Path | None:
    """Source file of the fieldlab module ``name`` (``a.b`` -> ``src/a/b.py`` or ``src/a/b/__init__.py``)."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    """Dotted name of a source file under ``src/``."""
    parts = list(path.resolve().relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> list[str]:
    """Every module of the fieldlab package."""
    return sorted(module_name(p) for p in (SRC / "fieldlab").rglob("*.py"))


@cache
def direct_imports(path: Path) -> frozenset[str]:
    """fieldlab modules imported anywhere in the file at ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = []
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.append(sub if module_file(sub) else node.module)
        else:
            continue
        found.update(n for n in names if n == "fieldlab" or n.startswith("fieldlab."))
    return frozenset(found)


def parents(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b"]``: the packages whose ``__init__`` runs before ``a.b.c``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(entry: Path) -> set[Path]:
    """Source files of every fieldlab module that running ``entry`` can import, transitively."""
    seen: set[str] = set()
    todo = list(direct_imports(entry))
    while todo:
        name = todo.pop()
        for mod in [*parents(name), name]:
            if mod in seen:
                continue
            seen.add(mod)
            path = module_file(mod)
            if path is None:
                raise ModuleNotFoundError(f"{entry}: imports {mod}, which has no source file under src/")
            todo.extend(direct_imports(path))
    return {module_file(m) for m in seen}  # type: ignore[misc]
