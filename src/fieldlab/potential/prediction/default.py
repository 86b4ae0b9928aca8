"""The default predictor of a trained checkpoint: the one path that ``eval_sr`` headlines and ``fieldlab predict`` runs.

Given a sample on its own grid (the training grid, or a whole multiple of it) and a trained operator:

============================= ============================================================================
``eval.refine_sweeps``        prediction (model units, on the sample's grid)
============================= ============================================================================
``k > 0``, training grid      ``R_k(M(x))``: the operator, then ``k`` symmetric Gauss-Seidel sweeps of the
                              sample's own FEM system (:class:`~fieldlab.potential.prediction.sweeps.Refiner`)
``k > 0``, finer grid         ``P R_k(M_c(x))``: the operator on the training grid (``predict_coarse``), swept on
                              the sample restricted to that grid, prolonged as a Q1 field
``0``, training grid          ``M(x)``: the forward pass
``0``, finer grid             the forward pass on the training grid with the correction interpolated back
                              (``predict_restricted``)
============================= ============================================================================

Both callers time the same call, so a user's seconds and the evaluation's are the same measure: everything from
the sample's arrays on except reading the file (the prior, restriction, forward pass, assembly, sweeps,
prolongation). The prior is the caller's (a cached coarse_fem prior checked against the sample, or one computed
for a user's file) and is passed in as ``prior``; its cost is added by the caller.
"""

from __future__ import annotations

import torch
from torch import nn

from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.prediction.sweeps import Refiner
from fieldlab.potential.schema import PotentialSample, refinement


def predictor_name(backbone: str, prior_kind: str, sweeps: int, restricted: bool) -> str:
    """Name of the default predictor (a key users see in ``eval_sr.json: default``).

    Examples
    --------
    >>> predictor_name("fno", "coarse_fem", 32, False)
    'fno_coarse_fem_sgs32'
    >>> predictor_name("unet", "none", 0, True)
    'unet_restricted'
    """
    parts = [backbone] + ([prior_kind] if prior_kind != "none" else []) + ([f"sgs{sweeps}"] if sweeps else [])
    return "_".join(parts + (["restricted"] if restricted else []))


def is_finer(sample: PotentialSample, grid: tuple[int, int, int] | None) -> bool:
    """Whether ``sample`` is on a grid other than ``grid`` (the training grid; ``None``: the sample's own): anything
    but the unit refinement (:func:`~fieldlab.potential.schema.refinement`), a whole one (2x) or none at all."""
    return grid is not None and refinement(sample.shape, grid) != (1, 1, 1)


@torch.no_grad()
def predict_default(
    model: nn.Module,
    item: dict[str, torch.Tensor],
    sample: PotentialSample,
    scaler: FieldScaler,
    sweeps: int,
    grid: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """The default prediction (module table) of one sample, ``(1, 1, D, H, W)`` in model units on its grid.

    Parameters
    ----------
    model
        The trained operator (``PotentialModel`` interface: ``forward``, ``predict_coarse``, ``predict_restricted``).
    item
        The sample's model inputs with a batch axis (``sigma``, ``f``, ``coords``, ``spacing`` and ``prior`` when the
        model takes one), as :class:`~fieldlab.potential.data.loader.PotentialDataset` builds them.
    sample
        The sample itself (physical units): its sigma, source and mask define the sweeps' system. Its ``u`` is never
        read.
    scaler
        The checkpoint's field scaling (model units <-> volts).
    sweeps
        ``eval.refine_sweeps``.
    grid
        The training grid ``(D, H, W)``; ``None`` or the sample's grid for a sample at the training resolution.
    """
    args = (item["sigma"], item["f"], item["coords"], item["spacing"])
    prior = item.get("prior")
    finer = is_finer(sample, grid)
    if sweeps > 0:
        refiner = Refiner.for_sample(
            sample, sweeps, scaler.unscale_potential, scaler.scale_potential, grid if finer else None
        )
        pred = model.predict_coarse(*args, grid=grid, prior=prior) if finer else model(*args, prior=prior)
        return refiner(pred)
    if finer:
        return model.predict_restricted(*args, grid=grid, prior=prior)
    return model(*args, prior=prior)
