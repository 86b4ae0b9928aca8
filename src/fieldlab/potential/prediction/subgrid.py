"""One fine sample -> its potential with the trained sub-grid corrector: the path eval_sr times and predict runs.

``u = gauge(start + s * C(x))``: the coarse start (:func:`~.inputs.coarse_start`), its scale ``s``, the corrector
``C`` on the fine channels ``x``, and the corpus gauge (zero mean over tissue, zero in air). Everything from the
sample's arrays on is in the call (restriction, coarse assembly, set-up and solve, prolongation, channels, forward
pass at the checkpoint's ``precision``: bfloat16 where it is native, which moves no error measurably), so timing
the call times the predictor.
"""

from __future__ import annotations

import numpy as np
import torch

from fieldlab.errors import InputError
from fieldlab.potential.data.subgrid_inputs import coarse_start, fold_factor, folded_channels, start_scale
from fieldlab.potential.models.trained import TrainedSubgrid
from fieldlab.potential.physics.fem.transfer import gauge
from fieldlab.potential.schema import PotentialSample

#: The sub-grid corrector's name in ``eval_sr.json`` (its rows and its point on the front).
NAME = "subgrid_unet"


def predict_subgrid(trained: TrainedSubgrid, sample: PotentialSample, device: torch.device | str = "cpu") -> np.ndarray:
    """The potential ``(D, H, W)`` float64 volts of a fine ``sample`` (module notes); its ``u`` is never read.

    Raises
    ------
    InputError
        The sample is not ``r`` times the corrector's training grid with its ``r``, or carries no source.
    """
    return predict_with_error(trained, sample, device)[0]


@torch.no_grad()
def predict_with_error(
    trained: TrainedSubgrid, sample: PotentialSample, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`predict_subgrid` and the error head's magnitude field ``(D, H, W)`` in volts (``None`` for a
    corrector without one), from the same forward pass."""
    r = fold_factor(sample.shape, trained.grid)
    if r != trained.model.factor:
        raise InputError(
            f"sample grid {tuple(sample.shape)} is {r}x the training grid {trained.grid}; the sub-grid corrector "
            f"was trained for {trained.model.factor}x"
        )
    tissue = np.asarray(sample.mask, dtype=bool)
    start = coarse_start(sample, r, trained.start_tol)
    scale = start_scale(start, tissue)
    x = folded_channels(sample, start, scale, trained.sigma_ref, r).to(device)
    correction, magnitude = trained.correction(x)
    u = gauge(start + scale * correction[0, 0].double().cpu().numpy(), tissue)
    return u, None if magnitude is None else scale * magnitude[0, 0].double().cpu().numpy()


def head_estimate(trained: TrainedSubgrid, u: np.ndarray, magnitude: np.ndarray, mask: np.ndarray) -> float:
    """The error head's estimate of ``||u - u_true||_mask / ||u||_mask``: ``||a||_mask / ||u||_mask`` times the
    checkpoint's calibration (the median of true over estimated error on the validation limbs, fitted in training).

    Raises
    ------
    InputError
        The corrector has no error head, or ``u`` vanishes on ``mask``.
    """
    if trained.estimate_scale is None:
        raise InputError("the sub-grid corrector has no error head (train it with subgrid.error_head: true)")
    m = np.asarray(mask, dtype=bool)
    norm = float(np.linalg.norm(u[m]))
    if not norm > 0:
        raise InputError("the prediction is zero over the mask: no relative error to estimate")
    return trained.estimate_scale * float(np.linalg.norm(magnitude[m])) / norm
