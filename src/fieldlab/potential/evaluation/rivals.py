"""The classical rivals of the test splits, run on their samples, cached as a stage output and checked on use.

:func:`split_rivals` and :func:`split_front` run the rivals of one split: multigrid-CG stopped early, the two-grid
cycle, nested iteration, FEM at coarser spacings. None of them depends on the learned model, only on the corpus, the
solver and the model's prior (the warm starts), so the ``eval_rivals`` stage runs them once (:func:`classical_rivals`,
``data/rivals/rivals.json``) and ``eval_sr`` reads them (:func:`read_rivals`): a change of backbone reruns only the
model's evaluation. What defines the file (the prior, the files of each split) is stored in it and checked against
the run that reads it.

Timing across two stages: ``eval_sr`` re-times one classical yardstick (multigrid-CG on stencils from zero,
``eval.yardstick_iterations`` iterations: ``cg_mf_k<k>``) on each split right after the learned predictors, in its own
process, and compares it with the cached seconds (:func:`yardstick_check`); a ratio outside the two runs' measured
spread is a drift of the machine between the stages, flagged in ``eval_sr.json: timing_check``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fieldlab.config import Config
from fieldlab.errors import InputError
from fieldlab.potential.data.loader import PotentialDataset, dataset_options, split_files
from fieldlab.potential.evaluation.classical.baselines import base_spacing, classical_front, prior_seconds
from fieldlab.potential.evaluation.classical.cg import (
    STENCIL_RIVAL,
    TwoGridSpec,
    rival_front,
    rival_name,
    training_spacing,
)
from fieldlab.potential.models.scaling import FieldScaler

#: Version of the rivals file's layout.
FORMAT = 1


def twogrid_prefix(prior: Any) -> str:
    """``coarse_<N>mm_sgs`` for a coarse_fem prior of ``N`` mm, else ``<kind>_sgs``: the name of the prior followed by
    sweeps (a key of ``baselines`` once followed by its number of sweeps). It is a coarse solve and fine smoothing,
    with no coarse-grid correction of the residual: the true two-grid cycle is ``twogrid_<N>mm_v<c>``
    (:mod:`~fieldlab.potential.evaluation.classical.twogrid`).

    Examples
    --------
    >>> from fieldlab.config import PriorConfig
    >>> twogrid_prefix(PriorConfig(kind="coarse_fem", coarse_spacing_m=0.004))
    'coarse_4mm_sgs'
    """
    if prior.kind == "coarse_fem":
        return f"coarse_{prior.coarse_spacing_m * 1e3:g}mm_sgs"
    return f"{prior.kind}_sgs"


def split_rivals(cfg: Config, ds: PotentialDataset, prior_cost: Callable[[int], float]) -> dict[str, dict[str, float]]:
    """The strongest classical rivals on the files of ``ds``
    (:func:`~fieldlab.potential.evaluation.classical.cg.rival_front`), scored on the loss masks, each point with the
    run-to-run spread of its seconds (``seconds_spread``):

    - multigrid-CG on each sample's own system stopped after ``eval.rival_iterations``, with the preconditioners of
      ``eval.rival_methods`` (``eval.rival_methods_x2`` on a split that refines ``data.grid`` by a whole factor, 2x);
    - the two-grid cycle after ``eval.twogrid_cycles`` (``eval.twogrid_smoothing`` sweeps, the exact correction on
      the ``eval.twogrid_coarse_m`` grid; :mod:`~fieldlab.potential.evaluation.classical.twogrid`);
    - on the 2x split, multigrid-CG (``eval.rival_methods_x2``) on the sample restricted to ``data.grid`` and
      prolonged back (``cg_<method>_r<N>mm_k<k>``), and nested iteration from ``data.grid``
      (``nested_<N>mm_k<k>`` after ``eval.nested_iterations`` fine CG iterations).

    The CG and two-grid rivals run cold and, for a model with a prior, warm-started from that prior (paying its
    seconds). Empty without iterations and cycles."""
    e = cfg.eval
    cg = e.rival_iterations and (e.rival_methods or e.rival_methods_x2)
    if not cg and not e.twogrid_cycles and not e.nested_iterations:
        return {}
    samples = [ds.sample(i) for i in range(len(ds))]
    grid = tuple(int(n) for n in cfg.data.grid)
    fine = any(training_spacing(s, grid) is not None for s in samples)  # the 2x split: a whole refinement of data.grid
    items = [ds[i] for i in range(len(ds))]
    masks = [item["mask"][0].numpy().astype(bool) for item in items]
    priors = None
    if all("prior" in item for item in items):
        priors = [ds.scaler.unscale_potential(item["prior"][0]).numpy().astype(np.float64) for item in items]
    seconds = [prior_cost(i) for i in range(len(ds))] if priors is not None else None
    methods = e.rival_methods_x2 if fine else e.rival_methods
    twogrid = TwoGridSpec(e.twogrid_cycles, e.twogrid_smoothing, e.twogrid_coarse_m) if e.twogrid_cycles else None
    return rival_front(
        samples,
        masks,
        e.rival_iterations,
        methods,
        e.rival_repeats,
        priors,
        seconds,
        twogrid=twogrid,
        training_grid=grid if fine else None,  # type: ignore[arg-type]
        restricted_methods=e.rival_methods_x2,
        nested_iterations=e.nested_iterations,
    )


def split_front(cfg: Config, ds: PotentialDataset, key: str) -> dict[str, dict[str, float]]:
    """The classical front on the files of ``ds``, scored on its loss masks; at 2x the base grid is one more point.
    Each solve is timed ``eval.rival_repeats`` times from the rasterised arrays (rasterisation apart, as
    ``rasterise_seconds``; :func:`~fieldlab.potential.evaluation.classical.baselines.classical_front`), with its
    ``seconds_spread``."""
    extra = (base_spacing(cfg),) if key == "x2" and base_spacing(cfg) not in cfg.eval.baseline_spacings_m else ()
    spacings = cfg.eval.baseline_spacings_m + extra
    masks = [ds[i]["mask"][0].numpy().astype(bool) for i in range(len(ds))]
    return classical_front(cfg, ds.files, masks, spacings, repeats=cfg.eval.rival_repeats)


def _prior_identity(prior: Any) -> dict[str, Any]:
    """What of a prior defines the warm rivals: its kind and, for a coarse_fem prior, its spacing."""
    out: dict[str, Any] = {"kind": prior.kind}
    if prior.kind == "coarse_fem":
        out["coarse_spacing_m"] = float(prior.coarse_spacing_m)
    return out


def rival_splits(cfg: Config) -> dict[str, str]:
    """``{key: split}`` of the splits the rivals run on: base and x2 (``eval.splits``), ood with ``data.n_ood``."""
    keys = dict(zip(("base", "x2"), cfg.eval.splits, strict=True))
    if cfg.data.n_ood > 0:
        keys["ood"] = "ood"
    return keys


def classical_rivals(cfg: Config) -> dict[str, Any]:
    """Every classical rival of every split of :func:`rival_splits` (:func:`split_front`, and :func:`split_rivals`
    on base and x2), with what defines them: ``{"format", "prior", "splits": {key: [file names]}, "baselines":
    {name: {key: point}}}``. Masks and warm starts are the evaluation's (the loss mask, ``model.prior`` of the run)."""
    prior = cfg.model.prior
    splits_of = rival_splits(cfg)
    ref = reference_spacing(cfg)
    kw = {**dataset_options(cfg, FieldScaler(1.0, 1.0), ref, prior), "cache": False}
    baselines: dict[str, dict[str, Any]] = {}
    splits: dict[str, list[str]] = {}
    for key, split in splits_of.items():
        ds = PotentialDataset(split_files(cfg.data.root, split), **kw)
        splits[key] = [Path(f).name for f in ds.files]
        for name, point in split_front(cfg, ds, key).items():
            baselines.setdefault(name, {})[key] = point
        if key != "ood":
            cost = prior_cost(ds, prior, cfg)
            for name, point in split_rivals(cfg, ds, cost).items():
                baselines.setdefault(name, {})[key] = point
    mask = _mask_identity(cfg, ref)
    return {"format": FORMAT, "prior": _prior_identity(prior), "mask": mask, "splits": splits, "baselines": baselines}


def reference_spacing(cfg: Config) -> list[float]:
    """The spacing of the base test split's samples: the training grid's, which a checkpoint stores as its reference
    spacing and the loss mask counts its singularity balls in."""
    from fieldlab.potential.schema import load_sample

    first = load_sample(split_files(cfg.data.root, cfg.eval.splits[0])[0])
    return [float(v) for v in first.spacing]


def _mask_identity(cfg: Config, reference: list[float]) -> dict[str, Any]:
    """What defines the mask the rivals are scored on (the loss mask): its region, its balls and their voxel size."""
    return {
        "region": cfg.loss.region,
        "singularity_radius": int(cfg.loss.singularity_radius),
        "reference_spacing": [round(float(v), 9) for v in reference],  # a file holds float32 spacings
    }


def prior_cost(ds: PotentialDataset, prior: Any, cfg: Config) -> Callable[[int], float]:
    """Seconds of sample ``i``'s prior, timed once in the caller's process and charged to every predictor (and warm
    rival) that uses it."""
    return functools.lru_cache(maxsize=None)(lambda i: prior_seconds(ds.sample(i), prior, cfg))


def read_rivals(
    path: str | Path, prior: Any, splits: dict[str, list[str]], cfg: Config, reference: list[float]
) -> dict[str, Any]:
    """The rivals file at ``path``, checked against the run that reads it: the same prior (kind, spacing), the same
    mask (``reference`` the checkpoint's reference spacing) and, for every split it evaluates, the same sample files;
    otherwise an :class:`InputError` naming the file and what differs."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no classical rivals found; expected the eval_rivals stage's output (dvc repro)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a rivals file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "baselines" not in data:
        raise InputError(f"{path}: not a rivals file of format {FORMAT}; rerun the eval_rivals stage")
    if data.get("prior") != _prior_identity(prior):
        raise InputError(
            f"{path}: rivals warm-started from prior {data.get('prior')}, the model's is {_prior_identity(prior)}; "
            "rerun the eval_rivals stage with this run's model.prior"
        )
    mask = _mask_identity(cfg, reference)
    if data.get("mask") != mask:
        raise InputError(f"{path}: rivals scored on mask {data.get('mask')}, this run's is {mask}; rerun eval_rivals")
    for key, names in splits.items():
        if data.get("splits", {}).get(key) != names:
            raise InputError(
                f"{path}: its {key} split is not this run's ({len(data.get('splits', {}).get(key, []))} files "
                f"against {len(names)}); rerun the eval_rivals stage on data.root"
            )
    return data


def yardstick_check(cfg: Config, ds: PotentialDataset, key: str, cached: dict[str, Any]) -> dict[str, Any]:
    """The yardstick (``cg_mf_k<eval.yardstick_iterations>``) re-timed on the files of ``ds`` in this process, beside
    its cached point: ``{"name", "cached_seconds", "seconds", "ratio", "allowed", "drift"}``, ``allowed`` the
    larger of the two runs' relative spreads (at least 10 %), ``drift`` whether the ratio lies outside ``1 +- allowed``.
    """
    k = int(cfg.eval.yardstick_iterations)
    name = rival_name(STENCIL_RIVAL, False, k)
    then = cached.get(name, {}).get(key)
    if then is None:
        raise InputError(f"rivals file: no {name} point on split {key}; expected eval.rival_methods to hold mf")
    masks = [ds[i]["mask"][0].numpy().astype(bool) for i in range(len(ds))]
    samples = [ds.sample(i) for i in range(len(ds))]
    now = rival_front(samples, masks, (k,), (STENCIL_RIVAL,), cfg.eval.rival_repeats, restricted_methods=())[name]
    ratio = now["seconds"] / then["seconds"]
    allowed = max(0.1, then["seconds_spread"] / then["seconds"], now["seconds_spread"] / now["seconds"])
    return {
        "name": name,
        "cached_seconds": then["seconds"],
        "seconds": now["seconds"],
        "ratio": ratio,
        "allowed": allowed,
        "drift": bool(abs(ratio - 1.0) > allowed),
    }
