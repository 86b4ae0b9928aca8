"""Which physics prior a sample gets (``model.prior.kind``), and the on-disk cache of the coarse_fem priors.

============ ==================================================================== ===========================
kind         prior                                                                 computed
============ ==================================================================== ===========================
none         no prior channel                                                      --
free_space   each pole's potential in an infinite medium (:mod:`.prior`)           by the loader, per item
coarse_fem   the sample restricted to ``coarse_spacing_m`` and solved with the FEM  once, by the ``priors``
             (:mod:`fieldlab.potential.physics.fem.coarse`)                             stage (:func:`build_cache`)
============ ==================================================================== ===========================

Cache layout under ``model.prior.root`` (default ``data/priors``), mirroring the corpus under ``data.root``::

    <split>/<sample file name>   prior (D, H, W) float32 V on the sample's grid, seconds, coarse_spacing_m,
                                 sample_hash (:func:`sample_hash` of the sample it was computed from)
    manifest.json                kind, coarse_spacing_m, solver settings, per-sample seconds and coarse grid

What defines a cached prior is stored with it and checked on every load: its spacing, its shape and the hash of the
sample's own sigma, source and spacing. A prior of another limb (another corpus whose file names collide, a corpus
re-made under the same names) is one :class:`~fieldlab.errors.InputError`, never used. Where the cache lives is the
run's setting (``model.prior.root``), never the checkpoint's.

The stage builds the whole cache in a temporary sibling folder and swaps it in only when every sample succeeded:
an error leaves the previous cache (or its absence) untouched, and the staging folder a killed run leaves behind
(``.<root>.*.tmp``) is removed by the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fieldlab.config import PriorConfig, SolverConfig, to_dict
from fieldlab.core.cluster import map_tasks
from fieldlab.core.io import load_npz, save_npz, write_json
from fieldlab.errors import ConfigError, InputError, PhysicsError
from fieldlab.potential.data.prior import free_space_prior
from fieldlab.potential.physics.fem.coarse import coarse_fem_prior, coarse_grid
from fieldlab.potential.schema import PotentialSample, load_sample

#: Every ``model.prior.kind``.
PRIOR_KINDS = ("none", "free_space", "coarse_fem")
#: Corpus splits the cache covers (those of :mod:`fieldlab.potential.physics.corpus` that a model with a prior reads,
#: when present: the fine training limbs for the operator across spacings, the unseen resolutions). Not imported from
#: there: the corpus module pulls in torch (seeding), which the stage does not need.
CACHE_SPLITS = ("train", "val", "test", "test_2x", "ood", "ood_2x", "train_2x", "val_2x", "test_1.5x", "test_aniso")
#: Arrays of one cache file.
CACHE_KEYS = ("prior", "seconds", "coarse_spacing_m", "sample_hash")


def sample_hash(sample: PotentialSample) -> str:
    """Hex digest (BLAKE2b, 128 bits) of what defines a sample's prior: its grid, spacing, sigma and source as
    float32 (the file format), so a sample read back from its file hashes as the one written.

    Examples
    --------
    >>> from fieldlab.potential.schema import PotentialSample
    >>> z = np.zeros((2, 2, 2), dtype=np.float32)
    >>> s = PotentialSample(np.zeros((2, 2, 2, 6)), z, z > 0, z.astype(np.uint8), z, (1.0, 1.0, 1.0),
    ...                     np.zeros((1, 3)), np.zeros((1, 3), dtype=np.int64))
    >>> t = PotentialSample(s.sigma, z + 1, s.mask, s.tissue, s.u, s.spacing, s.source_point, s.source_index)
    >>> sample_hash(s) == sample_hash(s), sample_hash(s) == sample_hash(t)
    (True, False)
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray(sample.shape, dtype=np.int64).tobytes())
    for a in (np.asarray(sample.spacing), sample.sigma, sample.source):
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()


def compute_prior(sample: PotentialSample, prior: PriorConfig, solver: SolverConfig | None = None) -> np.ndarray | None:
    """The ``(D, H, W)`` float64 prior (volts, corpus gauge, zero in air) of ``sample`` for ``prior.kind``.

    ``None`` for ``none``; ``solver`` (``physics.solver``, default settings when ``None``) is used by coarse_fem.
    """
    if prior.kind == "none":
        return None
    if prior.kind == "free_space":
        return free_space_prior(sample, prior.core_m)
    if prior.kind == "coarse_fem":
        s = SolverConfig() if solver is None else solver
        out, _ = coarse_fem_prior(
            sample, prior.coarse_spacing_m, tol=s.tol, maxiter=s.maxiter, method=s.method, max_attempts=s.attempts
        )
        return out
    raise ConfigError(f"model.prior.kind = {prior.kind!r}: expected one of {', '.join(PRIOR_KINDS)}")


@dataclass(frozen=True)
class PriorCache:
    """The cached coarse_fem priors under ``root``, made with ``coarse_spacing_m`` (m)."""

    root: Path
    coarse_spacing_m: float

    def path(self, sample_file: str | Path) -> Path:
        """``root/<split>/<name>`` of the corpus file ``.../<split>/<name>``."""
        sample_file = Path(sample_file)
        return Path(self.root) / sample_file.parent.name / sample_file.name

    def load(self, sample_file: str | Path, sample: PotentialSample) -> np.ndarray:
        """The ``(D, H, W)`` float32 prior (V) of ``sample`` (read from ``sample_file``); one-line
        :class:`InputError` when it is missing, made with another spacing, of another shape or of another sample."""
        return self.load_record(sample_file, sample)["prior"]

    def load_record(self, sample_file: str | Path, sample: PotentialSample) -> dict[str, np.ndarray]:
        """Every array of the cache file of ``sample_file`` (:data:`CACHE_KEYS`), checked against ``sample`` as
        :meth:`load` checks it."""
        shape = sample.shape
        path = self.path(sample_file)
        if not path.is_file():
            raise InputError(
                f"{path}: no cached coarse_fem prior for {sample_file} (model.prior.kind = coarse_fem); "
                "run `dvc repro priors` (python stages/priors.py)"
            )
        arrays = load_npz(path, CACHE_KEYS, what="a cached coarse_fem prior")
        made = float(arrays["coarse_spacing_m"])
        if not np.isclose(made, self.coarse_spacing_m, rtol=1e-9, atol=0.0):
            raise InputError(
                f"{path}: cached with model.prior.coarse_spacing_m = {made:g}; expected {self.coarse_spacing_m:g}: "
                "run `dvc repro priors`"
            )
        prior = arrays["prior"]
        if tuple(prior.shape) != tuple(shape):
            raise InputError(
                f"{path}: prior has shape {tuple(prior.shape)}; expected {tuple(shape)} (the grid of {sample_file}): "
                "run `dvc repro priors`"
            )
        made_for, expected = str(arrays["sample_hash"]), sample_hash(sample)
        if made_for != expected:
            raise InputError(
                f"{path}: cached prior of another sample (sample_hash {made_for[:12]}..., {sample_file} hashes to "
                f"{expected[:12]}...): model.prior.root = {self.root} holds the priors of another corpus; run "
                f"`python stages/priors.py data.root=<this corpus> model.prior.root=<its own folder>`"
            )
        return arrays


def cache_for(prior: PriorConfig) -> PriorCache | None:
    """The cache the loader reads for ``prior`` (coarse_fem), else ``None``."""
    return PriorCache(Path(prior.root), float(prior.coarse_spacing_m)) if prior.kind == "coarse_fem" else None


def build_cache(
    data_root: str | Path, prior: PriorConfig, solver: SolverConfig, progress: bool = False, client: Any = None
) -> dict[str, Any]:
    """Write the coarse_fem prior of every sample of ``data_root`` under ``prior.root`` and return the manifest.

    One task per sample (:func:`~fieldlab.core.cluster.map_tasks`) on the Dask ``client`` (``None``: in this
    process) computes its prior; this process writes each into the staging folder as it arrives, so a task given up
    on (after another's error) writes nothing. For any other kind only a manifest saying
    so is written. Each sample's error is re-raised with its file name; nothing under ``prior.root`` changes then.
    """
    data_root, root = Path(data_root), Path(prior.root)
    manifest: dict[str, Any] = {"kind": prior.kind, "data_root": str(data_root), "samples": []}
    files = [f for split in CACHE_SPLITS for f in sorted((data_root / split).glob("*.npz"))]
    if prior.kind == "coarse_fem":
        if not files:
            raise InputError(f"{data_root}: no .npz samples found (run the prepare stage first)")
        manifest.update(coarse_spacing_m=prior.coarse_spacing_m, solver=to_dict(solver))
    else:
        manifest["note"] = f"model.prior.kind = {prior.kind}: nothing to cache (the loader computes it per item)"
        files = []
    root.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes a 0700 folder; give the usual permissions
    try:
        tasks = [(f, prior, solver) for f in files]
        manifest["samples"] = map_tasks(_cache_task, tasks, client, progress, "priors", consume=_write_into(tmp))
        manifest["summary"] = _summary(manifest["samples"])
        write_json(tmp / "manifest.json", manifest)
        _swap_in(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _cache_task(args: tuple[Path, PriorConfig, SolverConfig]) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
    """The prior of one corpus file ``(file, prior, solver)``, computed and timed (a task of :func:`build_cache`):
    its cache name, the arrays of its cache file and its manifest record."""
    f, prior, solver = args
    try:
        sample = load_sample(f)
        t0 = time.perf_counter()
        value = compute_prior(sample, prior, solver)
        seconds = time.perf_counter() - t0
        spacing = tuple(float(s) for s in sample.spacing)
        grid = coarse_grid(sample.shape, spacing, prior.coarse_spacing_m)  # type: ignore[arg-type]
    except (ConfigError, InputError, PhysicsError) as exc:
        raise type(exc)(f"{f}: {exc}") from None
    name = f"{f.parent.name}/{f.name}"
    arrays = {
        "prior": np.asarray(value, dtype=np.float32),
        "seconds": np.float64(seconds),
        "coarse_spacing_m": np.float64(prior.coarse_spacing_m),
        "sample_hash": np.str_(sample_hash(sample)),
    }
    return name, arrays, {"file": name, "grid": list(sample.shape), "coarse_grid": list(grid.shape), "seconds": seconds}


def _write_into(staging: Path) -> Callable[[tuple[str, dict[str, np.ndarray], dict[str, Any]]], dict[str, Any]]:
    """Write one task's prior into ``staging`` (here, in the stage's process); keep its manifest record."""

    def write(result: tuple[str, dict[str, np.ndarray], dict[str, Any]]) -> dict[str, Any]:
        name, arrays, record = result
        save_npz(staging / name, **arrays)
        return record

    return write


def remove_stale_staging(root: Path) -> list[Path]:
    """Remove the staging (``.<name>.*.tmp``) and set-aside (``.<name>.*.old``) folders a killed run of
    :func:`build_cache` left beside ``root``; return what was removed."""
    stale = [p for pattern in (f".{root.name}.*.tmp", f".{root.name}.*.old") for p in root.parent.glob(pattern)]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    split = [Path(r["file"]).parent.name for r in records]
    base = [r["seconds"] for r, s in zip(records, split, strict=True) if "_" not in s]  # train, val, test, ood
    fine = [r["seconds"] for r, s in zip(records, split, strict=True) if s.endswith("_2x")]
    return {
        "samples": len(records),
        "seconds_mean": float(np.mean(base)) if base else None,
        "seconds_2x_mean": float(np.mean(fine)) if fine else None,
    }


def _swap_in(tmp: Path, root: Path) -> None:
    """Replace the folder ``root`` by ``tmp`` (a sibling): the old one is moved aside first, then removed."""
    old = None
    if root.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old", dir=root.parent))
        os.replace(root, old / root.name)
    try:
        os.replace(tmp, root)
    except BaseException:
        if old is not None:
            os.replace(old / root.name, root)
        raise
    finally:
        if old is not None:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(old)
