"""What a prediction costs and what the classical solver gives at equal cost, on the same test limbs and mask.

- :func:`classical_front`: the FEM on coarser grids of fixed physical spacing (``eval.baseline_spacings_m``; at 2x
  also the base grid itself), each evaluated on the target grid (:mod:`fieldlab.potential.physics.front`): relative
  L2 over the same loss mask as the model, in volts, and seconds per sample.
- :func:`prior_seconds`: the seconds the model's prior costs per sample (the coarse solve or the analytic prior,
  timed in the evaluation's own process), added to the forward pass so the surrogate's time is what a user pays.

Both need the continuous limbs of a synthetic corpus (``manifest.json``); a user's own (raw) corpus has none and
gets no classical front.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from fieldlab.config import Config, PriorConfig
from fieldlab.errors import InputError
from fieldlab.potential.data.priors import compute_prior
from fieldlab.potential.physics.front import corpus_limb, solve_at_spacing
from fieldlab.potential.schema import PotentialSample, load_sample


def baseline_name(h: float) -> str:
    """``fem_<N>mm`` for a spacing of ``N`` millimetres.

    Examples
    --------
    >>> baseline_name(0.004), baseline_name(0.0025)
    ('fem_4mm', 'fem_2.5mm')
    """
    return f"fem_{h * 1e3:g}mm"


def base_spacing(cfg: Config) -> float:
    """The corpus's base voxel along the limb axis (m); at 2x the base grid is the coarser classical solve."""
    return float(cfg.physics.phantom.box_m[2] / cfg.data.grid[0])


def manifest_records(root: str | Path) -> dict[str, dict[str, Any]]:
    """``<split>/<file>`` -> record of a synthetic corpus's manifest; empty for a corpus without limbs."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not valid JSON (expected the manifest written by the prepare stage)") from None
    if manifest.get("source") != "synthetic":
        return {}
    return {r["file"]: r for r in manifest.get("samples", []) if isinstance(r, dict) and "limb" in r}


def relative_l2(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """``||pred - truth|| / ||truth||`` over ``mask`` (float64); NaN over an empty mask."""
    if not mask.any():
        return float("nan")
    d = (pred - truth)[mask].astype(np.float64)
    t = truth[mask].astype(np.float64)
    return float(np.sqrt(np.sum(d * d) / np.sum(t * t)))


def classical_front(
    cfg: Config,
    files: list[Path],
    masks: list[np.ndarray],
    spacings: tuple[float, ...],
) -> dict[str, dict[str, float]]:
    """Mean (and max) relative L2 and mean seconds per sample of the FEM at each spacing, on ``files``.

    ``masks`` are the loss masks the model is scored on (one per file, on the file's grid). Returns ``{}`` for a
    corpus without continuous limbs.
    """
    records = manifest_records(cfg.data.root)
    root = Path(cfg.data.root)
    keys = [f"{f.parent.name}/{f.name}" for f in files]  # <split>/<file>, as the manifest names them
    if not records or any(k not in records for k in keys):
        return {}
    seed = int(json.loads((root / "manifest.json").read_text()).get("seed", cfg.seed))
    base = base_spacing(cfg)
    rows: dict[str, list[tuple[float, float]]] = {baseline_name(h): [] for h in spacings}
    for f, key, mask in zip(files, keys, masks, strict=True):
        sample = load_sample(f)
        limb, cond = corpus_limb(records[key], seed, cfg.physics)
        for h in spacings:
            point = solve_at_spacing(limb, cond, h, sample.mask, cfg.physics, base)
            rows[baseline_name(h)].append((relative_l2(point.phi, sample.u, mask), point.seconds))
    return {
        name: {
            "rel_l2": float(np.mean([e for e, _ in r])),
            "rel_l2_max": float(np.max([e for e, _ in r])),
            "seconds": float(np.mean([s for _, s in r])),
        }
        for name, r in rows.items()
    }


def prior_seconds(sample: PotentialSample, prior: PriorConfig, cfg: Config) -> float:
    """Seconds the prior of ``sample`` costs, timed here (in the caller's process and load): the coarse solve of a
    coarse_fem prior (restriction, assembly, AMG set-up, solve, prolongation), the analytic free-space prior."""
    t0 = time.perf_counter()
    compute_prior(sample, prior, cfg.physics.solver)
    return time.perf_counter() - t0
