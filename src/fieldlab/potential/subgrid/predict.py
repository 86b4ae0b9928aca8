"""One fine sample -> its potential with the trained sub-grid corrector: the path eval_sr times and predict runs.

``u = gauge(start + s * C(x))``: the coarse start (:func:`~.inputs.coarse_start`), its scale ``s``, the corrector
``C`` on the fine channels ``x``, and the corpus gauge (zero mean over tissue, zero in air). Everything from the
sample's arrays on is in the call (restriction, coarse assembly, set-up and solve, prolongation, channels, forward
pass), so timing the call times the predictor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fieldlab.errors import InputError
from fieldlab.potential.schema import PotentialSample
from fieldlab.potential.subgrid.inputs import coarse_start, current_share, fine_channels, fold_factor, start_scale
from fieldlab.potential.subgrid.model import SubgridCorrector

#: ``backbone`` of a sub-grid checkpoint (:func:`fieldlab.core.checkpoint.load_checkpoint`'s required keys).
BACKBONE = "subgrid"


@dataclass
class TrainedSubgrid:
    """A trained corrector with what defines its inputs (stored in its checkpoint, checked on load)."""

    model: SubgridCorrector
    grid: tuple[int, int, int]  # the training grid the fine channels fold onto
    start_tol: float
    sigma_ref: float
    epoch: int

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint dict (``fieldlab.core.checkpoint`` layout)."""
        m = self.model
        return {
            "model": m.state_dict(),
            "model_config": {"factor": m.factor, "base": m.base, "depth": m.depth, "groups": m.groups},
            "backbone": BACKBONE,
            "transforms": {"grid": list(self.grid), "start_tol": self.start_tol, "sigma_ref": self.sigma_ref},
            "epoch": int(self.epoch),
        }


def load_subgrid(path: str | Path, device: torch.device | str = "cpu") -> TrainedSubgrid:
    """Read a sub-grid checkpoint; a missing file or one of another model is an :class:`InputError` naming it."""
    from fieldlab.core.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, map_location=device)
    if ckpt["backbone"] != BACKBONE:
        raise InputError(f"{path}: a {ckpt['backbone']!r} checkpoint; expected a sub-grid corrector ({BACKBONE!r})")
    try:
        mc, tr = ckpt["model_config"], ckpt["transforms"]
        model = SubgridCorrector(int(mc["factor"]), int(mc["base"]), int(mc["depth"]), int(mc["groups"]))
        model.load_state_dict(ckpt["model"])
        grid = tuple(int(n) for n in tr["grid"])
        out = TrainedSubgrid(model, grid, float(tr["start_tol"]), float(tr["sigma_ref"]), int(ckpt["epoch"]))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a complete sub-grid checkpoint ({exc.__class__.__name__}: {exc})") from None
    out.model.to(device).eval()
    return out


def sample_tensors(sample: PotentialSample, start: np.ndarray, scale: float) -> dict[str, torch.Tensor]:
    """The sample's volumes as ``(C, D, H, W)`` float32 tensors, laid out as :mod:`fieldlab.potential.data.symmetry`
    (``sigma``, ``tissue``, ``f`` = the current share, ``prior`` = the start over ``scale``, ``spacing``)."""
    spacing = tuple(float(v) for v in sample.spacing)
    sigma = np.moveaxis(np.asarray(sample.sigma, dtype=np.float32), -1, 0)
    return {
        "sigma": torch.from_numpy(np.ascontiguousarray(sigma)),
        "tissue": torch.from_numpy(np.asarray(sample.mask, dtype=bool))[None],
        "f": torch.from_numpy(current_share(sample.source, spacing).astype(np.float32))[None],
        "prior": torch.from_numpy((start / scale).astype(np.float32))[None],
        "spacing": torch.tensor(spacing, dtype=torch.float32),
    }


def channels_of(item: dict[str, torch.Tensor], sigma_ref: float) -> torch.Tensor:
    """The corrector's input ``(1, 9, D, H, W)`` of one item of :func:`sample_tensors` (augmented or not)."""
    return fine_channels(item["sigma"][None], item["tissue"][None], item["f"][None], item["prior"][None], sigma_ref)


def gauge(u: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """The corpus gauge: zero mean over tissue, zero in air (in place; returned)."""
    u[tissue] -= u[tissue].mean()
    u[~tissue] = 0.0
    return u


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
    item = sample_tensors(sample, start, scale)
    x = channels_of(item, trained.sigma_ref).to(device)
    correction = trained.model(x)[0, 0].double().cpu().numpy()
    return gauge(start + scale * correction, tissue)
