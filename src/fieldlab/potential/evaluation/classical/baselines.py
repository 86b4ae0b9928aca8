"""What a prediction costs and what the classical solver gives at equal cost, on the same test limbs and mask.

- :func:`classical_front`: the FEM on coarser grids of fixed physical spacing (``eval.baseline_spacings_m``; at 2x
  also the base grid itself), each evaluated on the target grid
  (:mod:`fieldlab.potential.evaluation.classical.coarser`): relative L2 over the same loss mask as the model, in volts,
  and seconds per sample. The seconds start from the limb's
  arrays at that spacing, as every other predictor starts from the sample's arrays: the solve and the interpolation
  to the target grid are timed (median of repeats, with their spread), the rasterisation of the continuous limb is
  not (it is reported apart, ``rasterise_seconds``).
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
from fieldlab.potential.evaluation.classical.coarser import corpus_limb, rasterise_at_spacing, solve_rasterised
from fieldlab.potential.evaluation.front import spread
from fieldlab.potential.metrics import field_relative_l2
from fieldlab.potential.physics.corpus import manifest_samples, read_manifest
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
    if read_manifest(root).get("source") != "synthetic":
        return {}
    return {r["file"]: r for r in manifest_samples(root) if "limb" in r}


def classical_front(
    cfg: Config,
    files: list[Path],
    masks: list[np.ndarray],
    spacings: tuple[float, ...],
    repeats: int = 1,
) -> dict[str, dict[str, float]]:
    """The FEM at each spacing on ``files``: ``{fem_<N>mm: {rel_l2, rel_l2_max, rel_l2_spread, seconds,
    seconds_spread, rasterise_seconds}}``.

    ``masks`` are the loss masks the model is scored on (one per file, on the file's grid). The limb is rasterised
    at each spacing once (``rasterise_seconds``: the mean over files, NOT part of ``seconds``); the solve and the
    interpolation to the file's grid run ``repeats`` times, files and spacings interleaved per round, and
    ``seconds`` is the mean over files of their median, ``seconds_spread`` the median over files of the relative
    range (:func:`~fieldlab.potential.evaluation.front.spread`), ``rel_l2_spread`` 0 (the solve is deterministic).
    ``rel_l2`` and ``rel_l2_max`` are the mean and worst relative L2 over files. Returns ``{}`` for a corpus without
    continuous limbs.

    Raises
    ------
    InputError
        ``repeats < 1``.
    """
    if repeats < 1:
        raise InputError(f"eval.rival_repeats = {repeats}: expected at least 1 timed run")
    records = manifest_records(cfg.data.root)
    root = Path(cfg.data.root)
    keys = [f"{f.parent.name}/{f.name}" for f in files]  # <split>/<file>, as the manifest names them
    if not records or any(k not in records for k in keys):
        return {}
    seed = int(json.loads((root / "manifest.json").read_text()).get("seed", cfg.seed))
    base = base_spacing(cfg)
    names = [baseline_name(h) for h in spacings]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for f, key, mask in zip(files, keys, masks, strict=True):
        sample = load_sample(f)
        limb, cond = corpus_limb(records[key], seed, cfg.physics)
        rasters, raster_s = [], []
        for h in spacings:
            t0 = time.perf_counter()
            rasters.append(rasterise_at_spacing(limb, cond, h, cfg.physics, base))
            raster_s.append(time.perf_counter() - t0)
        times: list[list[float]] = [[] for _ in spacings]
        phis: list[np.ndarray] = []
        for rnd in range(repeats):
            for j, r in enumerate(rasters):
                t0 = time.perf_counter()
                phi = solve_rasterised(r, sample.mask, cfg.physics)
                times[j].append(time.perf_counter() - t0)
                if rnd == 0:
                    phis.append(phi)
        for j, name in enumerate(names):
            rows[name].append(
                {
                    "rel_l2": field_relative_l2(phis[j], sample.u, mask),
                    "seconds": float(np.median(times[j])),
                    "spread": spread(times[j]),
                    "rasterise": raster_s[j],
                }
            )
    return {
        name: {
            "rel_l2": float(np.mean([p["rel_l2"] for p in r])),
            "rel_l2_max": float(np.max([p["rel_l2"] for p in r])),
            "rel_l2_spread": 0.0,
            "seconds": float(np.mean([p["seconds"] for p in r])),
            "seconds_spread": float(np.median([p["spread"] for p in r])),
            "rasterise_seconds": float(np.mean([p["rasterise"] for p in r])),
        }
        for name, r in rows.items()
    }


def prior_seconds(sample: PotentialSample, prior: PriorConfig, cfg: Config) -> float:
    """Seconds the prior of ``sample`` costs, timed here (in the caller's process and load): the coarse solve of a
    coarse_fem prior (restriction, assembly, AMG set-up, solve, prolongation), the analytic free-space prior."""
    t0 = time.perf_counter()
    compute_prior(sample, prior, cfg.physics.solver)
    return time.perf_counter() - t0
