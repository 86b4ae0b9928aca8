"""The classical rivals of one split, run on its samples: multigrid-CG, the two-grid cycle, FEM at coarser spacings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fieldlab.config import Config
from fieldlab.potential.data.loader import PotentialDataset
from fieldlab.potential.evaluation.classical.baselines import base_spacing, classical_front
from fieldlab.potential.evaluation.classical.cg import TwoGridSpec, rival_front, training_spacing


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
