"""Validation of what an external agent changed in the workspace; everything not allowed is reverted.

Allowed: ``inr.<key>`` values in ``params.yaml`` that pass :func:`~fieldlab.explore.mutations.check_value`, and
edits of the source files listed in ``explore.agent_may_edit``. Everything else -- other params sections, new or
removed ``inr`` keys, out-of-range values, any other file created, edited or deleted -- is put back as it was, and
each revert is reported with its reason.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fieldlab.config import ExploreRanges
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
    old = yaml.safe_load(snap.params) or {}
    report = GuardReport(params=dict(old.get("inr", {})))
    try:
        new = yaml.safe_load((root / params_file).read_text()) or {}
        if not isinstance(new, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError, yaml.YAMLError) as exc:
        report.reverted.append(f"{params_file}: unreadable after the agent ({exc.__class__.__name__}): restored")
        new = old
    for section in sorted(set(old) | set(new)):
        if section != "inr" and old.get(section) != new.get(section):
            report.reverted.append(f"{params_file}: section {section} changed; only inr.* may change: reverted")
    old_inr, new_inr = old.get("inr", {}) or {}, new.get("inr", {}) or {}
    for key in sorted(set(old_inr) | set(new_inr)):
        if key not in new_inr:
            report.reverted.append(f"inr.{key} removed: only existing inr keys may change: restored")
        elif key not in old_inr:
            report.reverted.append(f"inr.{key} = {new_inr[key]!r} added: only existing inr keys may change: removed")
        elif new_inr[key] != old_inr[key]:
            why = check_value(key, new_inr[key], ranges)
            if why is None:
                report.params[key] = new_inr[key]
                report.kept.append(f"inr.{key} {old_inr[key]!r} -> {new_inr[key]!r}")
            else:
                report.reverted.append(f"inr.{key} = {new_inr[key]!r}: {why}: reverted to {old_inr[key]!r}")
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
