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


@torch.no_grad()
def predict_subgrid(trained: TrainedSubgrid, sample: PotentialSample, device: torch.device | str = "cpu") -> np.ndarray:
    """The potential ``(D, H, W)`` float64 volts of a fine ``sample`` (module notes); its ``u`` is never read.

    Raises
    ------
    InputError
        The sample is not ``r`` times the corrector's training grid with its ``r``, or carries no source.
    """
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
    correction = trained.correction(x)[0, 0].double().cpu().numpy()
    return gauge(start + scale * correction, tissue)
