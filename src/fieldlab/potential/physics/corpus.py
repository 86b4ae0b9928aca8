"""The potential corpus: generate it with the phantom and the FEM solver, or validate user files, in one layout.

Layout under ``root`` (default ``data/potential``)::

    train/NNNN.npz  val/NNNN.npz  test/NNNN.npz     base grid ``data.grid``
    test_2x/NNNN.npz                                 the test limbs rasterised and solved afresh at 2x
    ood/NNNN.npz                                     out-of-distribution test limbs (``data.n_ood``), base grid
    train_2x/ val_2x/ ood_2x/                        the first ``data.n_train_2x`` / ``n_val_2x`` training and
                                                     validation limbs and (``data.ood_2x``) the ood limbs at 2x:
                                                     the fine labels of the sub-grid model (same limbs, same names)
    test_1.5x/ test_aniso/                           the first ``data.n_test_resolutions`` test limbs at each of
                                                     ``data.test_resolutions`` (:mod:`~.resolutions`), same names
    manifest.json                                    params, seed, per-sample residual, time, checksum, geometry

Sample ``i`` of split ``s`` draws its limb from ``numpy_rng(seed, SPLIT_STREAM[s], i)``: the corpus is deterministic
per seed and a split's limbs do not depend on the size of the other splits.

With ``data.sources_per_limb = K > 1`` limb ``i`` carries ``K`` bipoles drawn after it from the same generator
(:func:`~.sampling.sample_limb_sources`); they are solved with one assembly and one AMG hierarchy
(:func:`~.multisource.solve_potential_many`) and written as ``NNNN_kk.npz``, all in the limb's split (a split never
shares a limb with another). The manifest records ``limb_index`` and ``source_k`` of every file. ``K = 1`` with
``physics.solver.prolongation = jacobi`` (the defaults) is the single-source path, file for file.

The ``ood`` split draws limb ``i`` from the training ranges with one range shifted outside them (``physics.ood``;
:func:`~.sampling.sample_ood_limb`), one source each, and records the shift (``ood_shift``) in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fieldlab.config import DataConfig, PhysicsConfig, to_dict
from fieldlab.core.cluster import map_tasks, remove_partial
from fieldlab.core.io import save_npz, write_json
from fieldlab.errors import InputError
from fieldlab.potential.physics.fem.multisource import solve_potential_many
from fieldlab.potential.physics.fem.solver import SolveInfo, check_inputs, solve_potential
from fieldlab.potential.physics.phantom import LimbParams, rasterise, with_source
from fieldlab.potential.physics.resolution import relative_l2_agreement
from fieldlab.potential.physics.sampling import ood_shift, sample_limb, sample_limb_sources, sample_ood_limb
from fieldlab.potential.schema import PotentialSample, load_sample

SPLITS = ("train", "val", "test")
#: Generator stream of each split (the out-of-distribution split ``ood`` included).
SPLIT_STREAM = {"train": 0, "val": 1, "test": 2, "ood": 3}
#: Every folder the corpus writes.
FOLDERS = (*SPLITS, "test_2x", "ood", "train_2x", "val_2x", "ood_2x", "test_1.5x", "test_aniso")
#: Refinement factor of the zero-shot evaluation grid.
FACTOR_2X = 2
#: Voxels (at base resolution) around each pole left out of the 1x-vs-2x agreement.
AGREEMENT_EXCLUDE_VOXELS = 3


@dataclass(frozen=True)
class Job:
    """One sample to generate: split directory, index, grid refinement factor."""

    split: str
    index: int
    factor: int
    resolution: str = ""  # a named resolution (physics.resolutions) instead of the factor: written to test_<name>/


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def solve_sample(seed: int, split: str, index: int, grid: tuple[int, int, int], factor: int, physics: PhysicsConfig):
    """Draw limb ``index`` of ``split``, rasterise it on ``grid * factor`` and solve; return (sample, info, limb)."""
    from fieldlab.core.seeding import numpy_rng  # seeding imports torch: only generating needs it, not importing

    rng = numpy_rng(seed, SPLIT_STREAM[split], index)
    if split == "ood":
        limb, cond, _ = sample_ood_limb(rng, physics, index)
    else:
        limb, cond = sample_limb(rng, physics.phantom, physics.conductivity, physics.source)
    shape = tuple(n * factor for n in grid)
    subsamples = max(2, -(-physics.phantom.subsamples // factor))  # ceil(n / factor): same physical lattice
    r = rasterise(limb, cond, shape, subsamples)  # type: ignore[arg-type]
    s = physics.solver
    u, info = solve_potential(
        r.sigma, r.source, r.spacing, s.tol, maxiter=s.maxiter, method=s.method, max_attempts=s.attempts
    )
    sample = PotentialSample(
        r.sigma, r.source, r.mask, r.tissue, u, np.array(r.spacing), r.source_point, r.source_index
    )
    return sample, info, limb


def solve_limb(
    seed: int,
    split: str,
    index: int,
    grid: tuple[int, int, int],
    factor: int,
    physics: PhysicsConfig,
    n_sources: int,
) -> list[tuple[PotentialSample, SolveInfo, LimbParams]]:
    """Limb ``index`` of ``split`` with ``n_sources`` bipoles, rasterised once on ``grid * factor`` and solved with
    one assembly and one AMG hierarchy; return ``(sample, info, limb)`` per source (``limb`` with its poles)."""
    from fieldlab.core.seeding import numpy_rng  # as solve_sample: torch only when generating

    limbs, cond = sample_limb_sources(
        numpy_rng(seed, SPLIT_STREAM[split], index), physics.phantom, physics.conductivity, physics.source, n_sources
    )
    shape = tuple(n * factor for n in grid)
    subsamples = max(2, -(-physics.phantom.subsamples // factor))  # as solve_sample
    first = rasterise(limbs[0], cond, shape, subsamples)  # type: ignore[arg-type]
    rasters = [first] + [with_source(first, limb) for limb in limbs[1:]]
    s = physics.solver
    kw = {"maxiter": s.maxiter, "method": s.method, "max_attempts": s.attempts, "prolongation": s.prolongation}
    out = solve_potential_many(first.sigma, [r.source for r in rasters], first.spacing, s.tol, **kw)
    samples = [
        PotentialSample(r.sigma, r.source, r.mask, r.tissue, u, np.array(r.spacing), r.source_point, r.source_index)
        for r, u in zip(rasters, out.u, strict=True)
    ]
    return list(zip(samples, out.infos, limbs, strict=True))


def sample_name(limb_index: int, source_k: int, n_sources: int) -> str:
    """File name of source ``source_k`` of limb ``limb_index``: ``NNNN.npz`` for one source, else ``NNNN_kk.npz``."""
    return f"{limb_index:04d}.npz" if n_sources == 1 else f"{limb_index:04d}_{source_k:02d}.npz"


def _run_job(args: tuple[Job, int, tuple[int, int, int], PhysicsConfig, str, int]) -> list[dict[str, Any]]:
    """One limb (all its sources, at its factor) solved and written atomically; its manifest records (a task)."""
    job, seed, grid, physics, root, n_sources = args
    if job.split == "ood" or job.resolution:
        n_sources = 1  # one source per out-of-distribution limb and per limb at a named resolution
    if job.resolution:  # imported here: resolutions imports this module's split streams
        from fieldlab.potential.physics.resolutions import solve_resolution

        solved = [solve_resolution(seed, job.split, job.index, grid, job.resolution, physics)]
    elif n_sources == 1 and physics.solver.prolongation == "jacobi":  # the single-source path, unchanged
        solved = [solve_sample(seed, job.split, job.index, grid, job.factor, physics)]
    else:
        solved = solve_limb(seed, job.split, job.index, grid, job.factor, physics, n_sources)
    name = (
        f"{job.split}_{job.resolution}"
        if job.resolution
        else f"{job.split}_2x"
        if job.factor == FACTOR_2X
        else job.split
    )
    records = []
    for k, (sample, info, limb) in enumerate(solved):
        path = Path(root) / name / sample_name(job.index, k, n_sources)
        save_npz(path, **sample.to_arrays())
        records.append(
            {
                "split": name,
                "file": f"{name}/{path.name}",
                "index": job.index,
                "limb_index": job.index,
                "source_k": k,
                "grid": list(sample.shape),
                "spacing": [float(v) for v in sample.spacing],
                "sha256": sha256(path),
                **{f"solver_{key}": v for key, v in info.to_dict().items()},
                "limb": limb.to_dict(),
                **({"ood_shift": ood_shift(job.index)} if job.split == "ood" else {}),
            }
        )
    return records


def _fresh_layout(root: Path) -> None:
    """Remove the split folders and manifest this module writes (and nothing else) so no stale sample survives."""
    for name in FOLDERS:
        if (root / name).is_dir():
            shutil.rmtree(root / name)
    (root / "manifest.json").unlink(missing_ok=True)


def resolution_agreement(root: Path, names: list[str], exclude_voxels: int = AGREEMENT_EXCLUDE_VOXELS) -> list[float]:
    """Relative L2 1x-vs-2x agreement of each test file ``names[i]`` (in ``test/`` and ``test_2x/``), more than
    ``exclude_voxels`` base voxels from the poles."""
    out = []
    for name in names:
        a = load_sample(root / "test" / name)
        b = load_sample(root / "test_2x" / name)
        exclude = exclude_voxels * float(max(a.spacing))
        spacing = tuple(float(v) for v in a.spacing)
        out.append(relative_l2_agreement(a.u, a.mask, b.u, b.mask, spacing, a.source_point, exclude))  # type: ignore[arg-type]
    return out


def generate_corpus(
    data: DataConfig,
    physics: PhysicsConfig,
    seed: int,
    root: str | Path | None = None,
    progress: bool = True,
    client: Any = None,
) -> dict[str, Any]:
    """Generate the synthetic corpus (see module notes) and return its manifest (also written as manifest.json).

    One task per limb (:func:`~fieldlab.core.cluster.map_tasks`) on the Dask ``client`` (``None``: in this process),
    each writing its samples atomically under ``root``; the manifest is written once, here, from the tasks' records.
    The files do not depend on where or on how many workers the tasks ran.
    """
    root = Path(root if root is not None else data.root)
    _fresh_layout(root)
    counts = {"train": data.n_train, "val": data.n_val, "test": data.n_test}
    jobs = [Job("test", i, FACTOR_2X) for i in range(data.n_test)] if data.test_2x else []  # longest first
    jobs += [Job("train", i, FACTOR_2X) for i in range(min(data.n_train_2x, data.n_train))]
    jobs += [Job("val", i, FACTOR_2X) for i in range(min(data.n_val_2x, data.n_val))]
    jobs += [Job("ood", i, FACTOR_2X) for i in range(data.n_ood)] if data.ood_2x else []
    n_res = min(data.n_test_resolutions, data.n_test)
    jobs += [Job("test", i, 1, r) for r in data.test_resolutions for i in range(n_res)]
    jobs += [Job(s, i, 1) for s in SPLITS for i in range(counts[s])]
    jobs += [Job("ood", i, 1) for i in range(data.n_ood)]
    t0 = time.perf_counter()
    k = data.sources_per_limb
    args = [(j, seed, data.grid, physics, str(root), k) for j in jobs]
    per_limb = map_tasks(_run_job, args, client, progress, "prepare")
    remove_partial([root / name for name in FOLDERS])  # what a worker killed mid-write left (its task was rerun)
    records = [r for rs in per_limb for r in rs]
    records.sort(key=lambda r: (r["split"], r["index"], r["source_k"]))
    names = [Path(r["file"]).name for r in records if r["split"] == "test"]
    agreement = resolution_agreement(root, names) if data.test_2x else []
    base = [r for r in records if r["split"] in SPLITS]
    fine = [r for r in records if r["split"] == "test_2x"]
    summary = {
        "samples": len(base),
        "samples_2x": len(fine),
        "samples_ood": sum(r["split"] == "ood" for r in records),
        "samples_fine": {
            n: sum(r["split"] == n for r in records)
            for n in ("train_2x", "val_2x", "ood_2x", *(f"test_{r}" for r in data.test_resolutions))
        },
        "limbs": len({(r["split"], r["limb_index"]) for r in base}),
        "sources_per_limb": k,
        "seconds_total": time.perf_counter() - t0,
        "workers": _worker_count(client),
        "residual_max": max(r["solver_residual"] for r in records),
        "solve_seconds_mean": float(np.mean([r["solver_seconds"] for r in base])),
        "solve_seconds_2x_mean": float(np.mean([r["solver_seconds"] for r in fine])) if fine else None,
        "unknowns_mean": float(np.mean([r["solver_unknowns"] for r in base])),
        "agreement_1x_2x_mean": float(np.mean(agreement)) if agreement else None,
        "agreement_1x_2x_max": float(np.max(agreement)) if agreement else None,
    }
    manifest = {
        "source": "synthetic",
        "seed": seed,
        "params": {"data": to_dict(data), "physics": to_dict(physics)},
        "summary": summary,
        "agreement_1x_2x": agreement,
        "samples": records,
    }
    write_json(root / "manifest.json", manifest)
    return manifest


def _worker_count(client: Any) -> int:
    """Workers the tasks ran on (1 in this process), for the manifest's summary."""
    return 1 if client is None else max(1, len(client.scheduler_info().get("workers", {})))


def read_manifest(root: str | Path) -> dict[str, Any]:
    """``root/manifest.json`` as :func:`generate_corpus` or :func:`import_raw` wrote it; ``{}`` when there is none.

    Raises
    ------
    InputError
        The file is not a JSON object.
    """
    path = Path(root) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not valid JSON (expected the manifest written by the prepare stage)") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path}: a JSON {type(manifest).__name__}; expected the object written by the prepare stage")
    return manifest


def manifest_samples(root: str | Path) -> list[dict[str, Any]]:
    """The per-sample records (``split``, ``file``, ...) of ``root/manifest.json``; empty without a manifest."""
    records = read_manifest(root).get("samples")
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def validate_raw_file(path: Path) -> PotentialSample:
    """Schema check plus physics checks of one user file; every error names the file."""
    sample = load_sample(path)
    try:
        mask = check_inputs(sample.sigma.astype(np.float64), sample.source.astype(np.float64), tuple(sample.spacing))
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if not np.array_equal(mask, sample.mask.astype(bool)):
        raise InputError(f"{path}: mask differs from (sigma != 0) at {int((mask != sample.mask).sum())} voxel(s)")
    if np.any(sample.u[~mask] != 0):
        raise InputError(f"{path}: u is non-zero in {int((sample.u[~mask] != 0).sum())} air voxel(s); expected 0")
    return sample


def import_raw(data: DataConfig, root: str | Path | None = None) -> dict[str, Any]:
    """Validate ``data.raw_dir/*.npz`` (sorted by name) and write them as train/val/test in the corpus layout.

    The first ``n_train`` files become train, the next ``n_val`` val, the next ``n_test`` test; files in
    ``raw_dir/test_2x/`` with the names of the test files become test_2x (optional); with ``n_ood > 0`` the first
    ``n_ood`` files of ``raw_dir/ood/`` become the out-of-distribution split.
    """
    raw = Path(data.raw_dir)
    root = Path(root if root is not None else data.root)
    files = sorted(raw.glob("*.npz")) if raw.is_dir() else []
    need = data.n_train + data.n_val + data.n_test
    if len(files) < need:
        raise InputError(
            f"{raw}: found {len(files)} .npz file(s); expected at least data.n_train + n_val + n_test = {need}"
        )
    samples = [validate_raw_file(f) for f in files[:need]]
    fines = {}  # every file is validated before the corpus folder is touched
    for k in range(need - data.n_test, need):
        fine = raw / "test_2x" / files[k].name
        if fine.is_file():
            fines[k] = (fine, validate_raw_file(fine))
    ood_files = sorted((raw / "ood").glob("*.npz")) if (raw / "ood").is_dir() else []
    if len(ood_files) < data.n_ood:
        raise InputError(
            f"{raw / 'ood'}: found {len(ood_files)} .npz file(s); expected at least data.n_ood = {data.n_ood}"
        )
    oods = [validate_raw_file(f) for f in ood_files[: data.n_ood]]
    _fresh_layout(root)
    records = []
    bounds = {
        "train": (0, data.n_train),
        "val": (data.n_train, data.n_train + data.n_val),
        "test": (need - data.n_test, need),
    }
    for split, (lo, hi) in bounds.items():
        for i, k in enumerate(range(lo, hi)):
            path = root / split / f"{i:04d}.npz"
            save_npz(path, **samples[k].to_arrays())
            records.append(
                {"split": split, "file": f"{split}/{path.name}", "origin": str(files[k]), "sha256": sha256(path)}
            )
            if split == "test" and k in fines:
                fine, fine_sample = fines[k]
                path2 = root / "test_2x" / f"{i:04d}.npz"
                save_npz(path2, **fine_sample.to_arrays())
                records.append(
                    {"split": "test_2x", "file": f"test_2x/{path2.name}", "origin": str(fine), "sha256": sha256(path2)}
                )
    for i, (origin, sample) in enumerate(zip(ood_files, oods, strict=False)):
        path = root / "ood" / f"{i:04d}.npz"
        save_npz(path, **sample.to_arrays())
        records.append({"split": "ood", "file": f"ood/{path.name}", "origin": str(origin), "sha256": sha256(path)})
    manifest = {"source": "raw", "raw_dir": str(raw), "params": {"data": to_dict(data)}, "samples": records}
    write_json(root / "manifest.json", manifest)
    return manifest


def prepare_corpus(
    data: DataConfig, physics: PhysicsConfig, seed: int, progress: bool = True, client: Any = None
) -> dict[str, Any]:
    """The ``prepare`` stage: ``data.source`` synthetic (generate, on ``client``) or raw (validate and import)."""
    if data.source == "raw":
        return import_raw(data)
    return generate_corpus(data, physics, seed, progress=progress, client=client)
