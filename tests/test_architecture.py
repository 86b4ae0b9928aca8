"""The layout's rules, checked from the code's own imports (ARCHITECTURE.md states them in words).

1. Import direction: ``core`` imports nothing of fieldlab but ``errors``; ``config`` imports ``core`` at most;
   the studies (``potential``, ``mpm``, ``inr``) import ``core`` and ``config``; ``inr`` reads ``mpm``'s trajectory
   format (``fieldlab.mpm.io``) and nothing else of it; ``explore`` never imports a study; a ``models`` package
   never imports training or evaluation code; nothing in ``src/`` imports ``stages/``.
2. The potential study's rooms (:data:`ROOMS`): each sub-package imports only the rooms below it, so the study reads
   physics -> data -> models -> training / prediction -> evaluation; ``prediction`` never imports ``evaluation`` or
   ``training``; the longest chain of imports between rooms is at most :data:`MAX_FLOORS` rooms.
3. A house a newcomer can read: at most :data:`MAX_TOP_MODULES` modules at the top of ``potential/``, no source file
   over :data:`MAX_LINES` lines, and every module opens with a docstring whose first line says its one job.
4. DVC deps cannot go stale: for every stage of ``dvc.yaml``, each fieldlab source file its command can import
   (transitively, lazy imports included) lies under one of the stage's ``deps``.
"""

from __future__ import annotations

import ast
import shlex
from functools import cache
from pathlib import Path

import pytest
import yaml
from import_graph import REPO, SRC, all_modules, closure, direct_imports, module_file

FLOOR = ("fieldlab", "fieldlab.errors")  # the root package (version string) and the error types: everyone's
ALLOWED: dict[str, tuple[str, ...]] = {
    "fieldlab.core": ("fieldlab.core",),
    "fieldlab.config": ("fieldlab.config", "fieldlab.core"),
    "fieldlab.potential": ("fieldlab.potential", "fieldlab.config", "fieldlab.core"),
    "fieldlab.mpm": ("fieldlab.mpm", "fieldlab.config", "fieldlab.core"),
    "fieldlab.inr": ("fieldlab.inr", "fieldlab.config", "fieldlab.core", "fieldlab.mpm.io"),
    "fieldlab.explore": ("fieldlab.explore", "fieldlab.config", "fieldlab.core"),
}
# The potential study's rooms and the rooms each may import (besides itself, ``config`` and ``core``): the sample
# format, the metrics and the figures sit at the ground; physics uses only the sample format; models know nothing of
# the corpus; data reads the corpus for the models; training and prediction stand on those; evaluation on top.
P = "fieldlab.potential."
GROUND = ("schema", "metrics", "figures")
ROOMS: dict[str, tuple[str, ...]] = {
    "schema": (),
    "metrics": (),
    "figures": (),
    "physics": ("schema",),
    "models": ("schema",),
    "data": ("schema", "physics", "models"),
    "training": (*GROUND, "physics", "data", "models"),
    "prediction": ("schema", "metrics", "physics", "data", "models"),
    "evaluation": (*GROUND, "physics", "data", "models", "prediction"),
}
for _room, _below in ROOMS.items():
    ALLOWED[P + _room] = (P + _room, *(P + b for b in _below), "fieldlab.config", "fieldlab.core")
MAX_FLOORS = 5
MAX_TOP_MODULES = 4
MAX_LINES = 450
# Training and evaluation code, which no models package may import.
TRAINERS = (
    "fieldlab.potential.training.operator",
    "fieldlab.potential.evaluation.zero_shot",
    "fieldlab.inr.fit",
    "fieldlab.inr.block",
)
MODELS = ("fieldlab.potential.models", "fieldlab.inr.models")


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(module: str, imported: frozenset[str]) -> list[str]:
    """Import-rule breaches of ``module`` importing each of ``imported`` (module names)."""
    out = []
    for target in sorted(imported):
        if target in FLOOR or target.startswith("stages"):
            if target.startswith("stages"):
                out.append(f"{module} imports {target}: nothing in src/ imports stages/")
            continue
        for pkg, allowed in ALLOWED.items():
            if _under(module, pkg) and not any(_under(target, a) for a in allowed):
                out.append(f"{module} imports {target}: {pkg} may import only {', '.join(allowed)}")
        if any(_under(module, m) for m in MODELS) and any(_under(target, t) for t in TRAINERS):
            out.append(f"{module} imports {target}: a models package never imports training or evaluation code")
    return out


def test_every_module_follows_the_import_rules():
    found = []
    for module in all_modules():
        imported = direct_imports(module_file(module))
        found += violations(module, imported)
        found += [f"{module} imports {t}" for t in imported if t.split(".")[0] == "stages"]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("fieldlab.core.io", "fieldlab.config"),
        ("fieldlab.config.core", "fieldlab.potential.schema"),
        ("fieldlab.potential.data.loader", "fieldlab.inr.data"),
        ("fieldlab.mpm.io", "fieldlab.inr.fit"),
        ("fieldlab.inr.fit", "fieldlab.mpm.simulator"),
        ("fieldlab.explore.driver", "fieldlab.inr.fit"),
        ("fieldlab.explore.driver", "fieldlab.potential.training.operator"),
        ("fieldlab.inr.models.registry", "fieldlab.inr.fit"),
        ("fieldlab.potential.models.wrapper", "fieldlab.potential.training.operator"),
        ("fieldlab.potential.physics.corpus", "stages.prepare"),
        ("fieldlab.potential.physics.corpus", "fieldlab.potential.data.prior"),
        ("fieldlab.potential.physics.fem.solver", "fieldlab.potential.metrics"),
        ("fieldlab.potential.models.trained", "fieldlab.potential.data.loader"),
        ("fieldlab.potential.prediction.files", "fieldlab.potential.evaluation.subgrid"),
        ("fieldlab.potential.prediction.default", "fieldlab.potential.training.operator"),
        ("fieldlab.potential.evaluation.zero_shot", "fieldlab.potential.training.operator"),
        ("fieldlab.potential.training.subgrid", "fieldlab.potential.prediction.subgrid"),
        ("fieldlab.potential.metrics", "fieldlab.potential.physics.fem.solver"),
    ],
)
def test_the_rules_catch_a_back_import(module, target):
    """Each forbidden direction is reported (the check cannot pass vacuously)."""
    assert violations(module, frozenset({target}))


def test_allowed_imports_are_not_reported():
    assert violations("fieldlab.inr.fit", frozenset({"fieldlab.mpm.io", "fieldlab.core.io", "fieldlab.errors"})) == []
    assert violations("fieldlab.potential.training.operator", frozenset({"fieldlab.potential.models.wrapper"})) == []


# ---- the potential study's rooms ------------------------------------------------------------------------------
def room(module: str) -> str | None:
    """The room of a potential module (its sub-package or top-level module); None outside the study."""
    return module[len(P) :].split(".")[0] if module.startswith(P) and module != P.rstrip(".") else None


def room_graph(modules: list[str]) -> dict[str, set[str]]:
    """Room -> the other rooms its modules import."""
    graph: dict[str, set[str]] = {}
    for module in modules:
        r = room(module)
        if r is None:
            continue
        graph.setdefault(r, set())
        graph[r] |= {t for t in map(room, direct_imports(module_file(module))) if t is not None and t != r}
    return graph


def floors(graph: dict[str, set[str]]) -> int:
    """Rooms in the longest import chain of ``graph`` (a cycle is an error)."""

    @cache
    def height(r: str, path: tuple[str, ...] = ()) -> int:
        if r in path:
            raise AssertionError(f"import cycle between rooms: {' -> '.join((*path, r))}")
        return 1 + max((height(t, (*path, r)) for t in graph.get(r, ())), default=0)

    return max((height(r) for r in graph), default=0)


def test_every_room_is_declared():
    assert set(room_graph(all_modules())) <= set(ROOMS), "a new room of potential/: declare it in ROOMS"


def test_the_potential_study_has_at_most_five_floors():
    assert floors(room_graph(all_modules())) <= MAX_FLOORS


def test_floors_counts_the_longest_chain():
    """Hand-built graphs: a chain of six rooms is six floors; a cycle is reported."""
    chain = {str(i): {str(i - 1)} for i in range(1, 6)} | {"0": set()}
    assert floors(chain) == 6
    assert floors({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == 3
    with pytest.raises(AssertionError, match="cycle"):
        floors({"a": {"b"}, "b": {"a"}})


def test_the_top_of_potential_holds_few_modules():
    top = [p.name for p in (SRC / "fieldlab" / "potential").glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= MAX_TOP_MODULES, f"potential/ top level: {sorted(top)}; move modules into their rooms"


def test_no_source_file_is_too_long():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these files (over {MAX_LINES} lines): {long}"


def test_every_module_says_its_job_on_its_first_line():
    """A module docstring opens every file; its first line is a whole sentence (ends with '.')."""
    bad = []
    for path in sorted((SRC / "fieldlab").rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        first = doc.splitlines()[0].strip() if doc else ""
        if not first.endswith("."):
            bad.append(f"{path.relative_to(SRC)}: {first[:60]!r}")
    assert bad == [], "\n".join(bad)


# ---- DVC dependencies ------------------------------------------------------------------------------------------
def stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def dep_paths(stage: dict) -> list[Path]:
    return [(REPO / (d if isinstance(d, str) else next(iter(d)))).resolve() for d in stage.get("deps", [])]


def entry_script(stage: dict) -> Path:
    """The Python script a stage's ``cmd`` runs (``python stages/x.py ...``)."""
    words = shlex.split(stage["cmd"])
    script = next(w for w in words if w.endswith(".py"))
    return REPO / script


def uncovered(stage: dict) -> list[str]:
    """Source files the stage's command can import that none of its deps covers."""
    deps = dep_paths(stage)
    files = {entry_script(stage), *closure(entry_script(stage))}
    return sorted(str(f.relative_to(REPO)) for f in files if not any(f == d or d in f.parents for d in deps))


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_cover_every_module_it_imports(name):
    missing = uncovered(stages()[name])
    assert missing == [], f"dvc.yaml stage {name}: add to deps: {missing}"


def test_stage_deps_exist():
    for name, stage in stages().items():
        for dep in dep_paths(stage):
            assert dep.exists() or not dep.is_relative_to(SRC), f"dvc.yaml stage {name}: dep {dep} does not exist"


def test_the_coverage_check_sees_a_missing_dep():
    """Dropping one directory from a stage's deps is reported (the check is not vacuous)."""
    stage = dict(stages()["prepare"])
    stage["deps"] = [d for d in stage["deps"] if d != "src/fieldlab/core"]
    assert any(m.startswith("src/fieldlab/core/") for m in uncovered(stage))
