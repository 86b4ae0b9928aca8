"""The layout's rules, checked from the code's own imports (ARCHITECTURE.md states them in words).

1. Import direction: ``core`` imports nothing of fieldlab but ``errors``; ``config`` imports ``core`` at most;
   the studies (``potential``, ``mpm``, ``inr``) import ``core`` and ``config``; ``inr`` reads ``mpm``'s trajectory
   format (``fieldlab.mpm.io``) and nothing else of it; inside ``potential``, ``physics`` uses only ``schema``;
   ``explore`` never imports a study; a ``models`` package never
   imports training or evaluation code; nothing in ``src/`` imports ``stages/``.
2. DVC deps cannot go stale: for every stage of ``dvc.yaml``, each fieldlab source file its command can import
   (transitively, lazy imports included) lies under one of the stage's ``deps``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from import_graph import REPO, SRC, all_modules, closure, direct_imports, module_file

FLOOR = ("fieldlab", "fieldlab.errors")  # the root package (version string) and the error types: everyone's
ALLOWED: dict[str, tuple[str, ...]] = {
    "fieldlab.core": ("fieldlab.core",),
    "fieldlab.config": ("fieldlab.config", "fieldlab.core"),
    "fieldlab.potential": ("fieldlab.potential", "fieldlab.config", "fieldlab.core"),
    # physics (phantom, FEM, corpus) uses the sample format and nothing else of the study: never data/ or models/
    "fieldlab.potential.physics": (
        "fieldlab.potential.physics",
        "fieldlab.potential.schema",
        "fieldlab.config",
        "fieldlab.core",
    ),
    "fieldlab.mpm": ("fieldlab.mpm", "fieldlab.config", "fieldlab.core"),
    "fieldlab.inr": ("fieldlab.inr", "fieldlab.config", "fieldlab.core", "fieldlab.mpm.io"),
    "fieldlab.explore": ("fieldlab.explore", "fieldlab.config", "fieldlab.core"),
}
# Training and evaluation code, which no models package may import.
TRAINERS = ("fieldlab.potential.train", "fieldlab.potential.evaluate", "fieldlab.inr.fit", "fieldlab.inr.block")
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
        ("fieldlab.explore.driver", "fieldlab.potential.train"),
        ("fieldlab.inr.models.registry", "fieldlab.inr.fit"),
        ("fieldlab.potential.models.wrapper", "fieldlab.potential.train"),
        ("fieldlab.potential.physics.corpus", "stages.prepare"),
        ("fieldlab.potential.physics.corpus", "fieldlab.potential.data.prior"),
    ],
)
def test_the_rules_catch_a_back_import(module, target):
    """Each forbidden direction is reported (the check cannot pass vacuously)."""
    assert violations(module, frozenset({target}))


def test_allowed_imports_are_not_reported():
    assert violations("fieldlab.inr.fit", frozenset({"fieldlab.mpm.io", "fieldlab.core.io", "fieldlab.errors"})) == []
    assert violations("fieldlab.potential.train", frozenset({"fieldlab.potential.models.wrapper"})) == []


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
