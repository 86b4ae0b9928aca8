"""Validation of what an external agent changed in the workspace; everything not allowed is reverted.

Allowed: ``inr.<key>`` values in ``params.yaml`` (nested ones as ``inr.ngp.levels``) that pass
:func:`~fieldlab.explore.mutations.check_value` and that the (new) ``inr.model`` reads
(:func:`~fieldlab.explore.keys.ignored_by`), and edits of the source files listed in ``explore.agent_may_edit``.
Everything else -- other params sections, new or removed ``inr`` keys, out-of-range values, edits of keys the model
ignores, any other file created, edited or deleted -- is put back as it was, and each revert is reported with its
reason. ``params.yaml`` is read with the project's loader (:func:`fieldlab.config.core.yaml_load`, ``5e-05`` is a
number), as the stages read it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fieldlab.config import ExploreRanges, yaml_load
from fieldlab.explore.keys import flatten, ignored_by, model_of, residual_of, with_value
from fieldlab.explore.mutations import check_value

#: directories never watched (VCS, caches, environments, stage outputs)
SKIP_DIRS = frozenset(
    {
        ".git",
        ".dvc",
        ".venv",
        "__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        "data",
        "artifacts",
        "metrics",
        "plots",
        "experiments",
        "runs",
        "node_modules",
    }
)
MAX_BYTES = 4 * 2**20  # larger files are watched by hash only and cannot be restored


@dataclass
class Snapshot:
    """Contents of the watched files before the agent ran."""

    root: Path
    params: str
    files: dict[str, bytes | str]  # relative path -> content, or sha256 for large files
    skip: frozenset[str] = frozenset()


@dataclass
class GuardReport:
    """Outcome: the accepted ``inr`` params and one line per kept or reverted change."""

    params: dict[str, Any]
    kept: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)


def _walk(root: Path, skip: frozenset[str]) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and (rel_dir / d).as_posix() not in skip]
        out += [(rel_dir / f).as_posix() for f in filenames if (rel_dir / f).as_posix() not in skip]
    return sorted(out)


def _content(path: Path) -> bytes | str:
    data = path.read_bytes() if path.stat().st_size <= MAX_BYTES else None
    return data if data is not None else hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: str | Path, params_file: str = "params.yaml", skip: tuple[str, ...] = ()) -> Snapshot:
    """Record ``params_file`` and every watched file under ``root`` (``skip``: extra relative paths to ignore)."""
    root = Path(root)
    skip_set = frozenset({params_file, *skip})
    files = {rel: _content(root / rel) for rel in _walk(root, skip_set)}
    return Snapshot(root, (root / params_file).read_text(), files, skip_set)


def _check_inr(old_inr: dict[str, Any], new_inr: dict[str, Any], ranges: ExploreRanges, report: GuardReport) -> None:
    """Compare the inr sections key by dotted key; put each accepted change into ``report.params``."""
    old_f, new_f = flatten(old_inr), flatten(new_inr)
    model = model_of(old_inr)
    if new_f.get("model", model) != model and check_value("model", new_f["model"], ranges) is None:
        model = new_f["model"]  # keys are judged against the model the fit will build
    for key in sorted(set(old_f) | set(new_f)):
        if key not in new_f:
            report.reverted.append(f"inr.{key} removed: only existing inr keys may change: restored")
        elif key not in old_f:
            report.reverted.append(f"inr.{key} = {new_f[key]!r} added: only existing inr keys may change: removed")
        elif new_f[key] != old_f[key]:
            why = check_value(key, new_f[key], ranges)
            if why is None and ignored_by(model, key, residual_of(old_inr)):
                why = f"inr.model = {model} does not use it"
            if why is None:
                report.params = with_value(report.params, key, new_f[key])
                report.kept.append(f"inr.{key} {old_f[key]!r} -> {new_f[key]!r}")
            else:
                report.reverted.append(f"inr.{key} = {new_f[key]!r}: {why}: reverted to {old_f[key]!r}")


def validate(
    snap: Snapshot,
    ranges: ExploreRanges,
    may_edit: tuple[str, ...],
    params_file: str = "params.yaml",
) -> GuardReport:
    """Compare the workspace with ``snap``; keep allowed changes, revert the rest, restore ``params_file``.

    ``params_file`` is always written back as it was; the accepted ``inr`` values are returned in the report.
    """
    root = snap.root
    old = yaml_load(snap.params) or {}
    report = GuardReport(params=dict(old.get("inr", {})))
    try:
        new = yaml_load((root / params_file).read_text()) or {}
        if not isinstance(new, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError, yaml.YAMLError) as exc:
        report.reverted.append(f"{params_file}: unreadable after the agent ({exc.__class__.__name__}): restored")
        new = old
    for section in sorted(set(old) | set(new)):
        if section != "inr" and old.get(section) != new.get(section):
            report.reverted.append(f"{params_file}: section {section} changed; only inr.* may change: reverted")
    _check_inr(old.get("inr", {}) or {}, new.get("inr", {}) or {}, ranges, report)
    (root / params_file).write_text(snap.params)

    now = set(_walk(root, snap.skip))
    for rel in sorted(now | set(snap.files)):
        path = root / rel
        before = snap.files.get(rel)
        after = _content(path) if rel in now else None
        if after == before:
            continue
        if rel in may_edit:
            report.kept.append(f"{rel}: edited (allowed source file)")
            continue
        what = "created" if before is None else "deleted" if after is None else "edited"
        if before is None:
            path.unlink()
        elif isinstance(before, str):
            report.reverted.append(f"{rel}: {what}, not an allowed file, too large to restore: left as is")
            continue
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(before)
        report.reverted.append(f"{rel}: {what}, not an allowed file: reverted")
    return report
