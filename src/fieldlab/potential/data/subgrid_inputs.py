"""Inputs of the sub-grid corrector for one fine sample (a grid ``r`` times the training grid along each axis).

Start
-----
The sample's own arrays restricted to the training grid (:func:`~fieldlab.potential.physics.fem.coarse.restrict` with
partial-volume boundary cells: tensor mean times tissue fraction; current summed cell by cell), solved by
multigrid-CG to the relative residual ``subgrid.start_tol`` and prolonged back as the Q1 field (``coarse_fem_prior``
at the training spacing); the corrector adds what that grid cannot resolve. The partial-volume cells keep the
boundary's conductance: with the ``t >= 1/2`` rule of the coarse_fem prior the restricted limb grows by its tied
boundary cells and the start is ~1 % too low everywhere (val_2x: 0.010-0.013 rel L2 against 1 mm; partial volume:
0.008-0.011).

Channels (fine grid, before folding)
------------------------------------
========= =========================================================================================
0-2       ``log(sigma_ii / sigma_ref)`` in tissue, 0 in air
3-5       ``sigma_ij / sqrt(sigma_ii sigma_jj)`` (xy, xz, yz) in tissue, 0 in air
6         air indicator
7         the source as the share of the injected current per voxel: ``f dV / sum_{f > 0} f dV``
8         the start over its scale ``s`` (its RMS over tissue)
========= =========================================================================================

Everything is relative (log conductivity, current share, the start over its own RMS), so the inputs do not depend
on the source's amplitude and the corrector's output, times ``s``, is in volts.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from fieldlab.errors import InputError
from fieldlab.potential.physics.fem.coarse import coarse_fem_prior
from fieldlab.potential.physics.fem.solver import DEFAULT_METHOD
from fieldlab.potential.physics.fem.stencil import split
from fieldlab.potential.schema import PotentialSample, refinement

#: Off-diagonal channels (xy, xz, yz) and the diagonal pair each is normalised by.
OFF_DIAGONAL = ((3, 0, 1), (4, 0, 2), (5, 1, 2))


def fold_factor(shape: tuple[int, ...], grid: tuple[int, int, int]) -> int:
    """The whole refinement ``r`` of ``shape`` over the training ``grid``, the same along every axis
    (:func:`~fieldlab.potential.schema.refinement`).

    Raises
    ------
    InputError
        ``shape`` is not ``r * grid`` with one integer ``r >= 2``.

    Examples
    --------
    >>> fold_factor((192, 96, 96), (96, 48, 48))
    2
    """
    factor = refinement(shape, grid)
    if factor is None or len(set(factor)) != 1 or factor[0] < 2:
        raise InputError(
            f"sample grid {tuple(shape)}: the sub-grid corrector expects a whole multiple r >= 2 of the training "
            f"grid {tuple(grid)} along every axis"
        )
    return factor[0]


def coarse_start(sample: PotentialSample, factor: int, tol: float, method: str = DEFAULT_METHOD) -> np.ndarray:
    """The start (module notes): ``(D, H, W)`` volts on the sample's grid, corpus gauge (zero mean over tissue)."""
    spacing = float(np.max(np.asarray(sample.spacing, dtype=np.float64))) * factor
    start, _ = coarse_fem_prior(sample, spacing, tol=tol, method=method, partial_volume=True)
    return start


def start_scale(start: np.ndarray, tissue: np.ndarray) -> float:
    """RMS of the start over tissue: the unit of the corrector's input and output."""
    values = np.asarray(start, dtype=np.float64)[np.asarray(tissue, dtype=bool)]
    scale = float(np.sqrt(np.mean(values * values))) if values.size else 0.0
    if not np.isfinite(scale) or scale <= 0:
        raise InputError("the coarse start is zero or not finite over tissue: the sample carries no source current")
    return scale


def current_share(source: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """``f dV / sum_{f > 0} f dV``: each voxel's share of the injected current (dimensionless)."""
    return np.asarray(source, dtype=np.float64) * share_scale(source, spacing)


def share_scale(source: np.ndarray, spacing: tuple[float, ...]) -> float:
    """``dV / sum_{f > 0} f dV``, the factor from the source to each voxel's share of the injected current."""
    dV = float(np.prod(spacing))
    injected = float(np.sum(source, where=np.asarray(source) > 0, dtype=np.float64)) * dV
    if injected <= 0:
        raise InputError("source: no positive current injected; expected a bipole")
    return dV / injected


def fine_channels(
    sigma: torch.Tensor, tissue: torch.Tensor, share: torch.Tensor, start: torch.Tensor, sigma_ref: float
) -> torch.Tensor:
    """The fine channels (module table) ``(N, 9, D, H, W)`` from ``sigma`` ``(N, 6, D, H, W)``, ``tissue``,
    ``share`` and ``start`` (already over its scale) ``(N, 1, D, H, W)``."""
    t = tissue.to(sigma.dtype)
    diag = sigma[:, :3].clamp_min(1e-12)
    logs = torch.log(diag / sigma_ref) * t
    off = torch.stack([sigma[:, k] / torch.sqrt(diag[:, i] * diag[:, j]) for k, i, j in OFF_DIAGONAL], dim=1) * t
    return torch.cat([logs, off, 1.0 - t, share.to(sigma.dtype), start.to(sigma.dtype)], dim=1)


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


@numba.njit(cache=True, nogil=True)
def _folded(sigma, mask, source, share_scale, start, start_scale, sigma_ref, r, out, c0, c1):  # pragma: no cover
    """Coarse planes ``c0 <= c < c1`` of :func:`folded_channels`."""
    _, _, Hc, Wc = out.shape
    r3 = r * r * r
    for c in range(c0, c1):
        for dz in range(r):
            z = c * r + dz
            for dy in range(r):
                for b in range(Hc):
                    y = b * r + dy
                    for dx in range(r):
                        q = (dz * r + dy) * r + dx
                        for a in range(Wc):  # innermost: contiguous writes
                            x = a * r + dx
                            if mask[z, y, x]:
                                d0 = max(np.float64(sigma[z, y, x, 0]), 1e-12)
                                d1 = max(np.float64(sigma[z, y, x, 1]), 1e-12)
                                d2 = max(np.float64(sigma[z, y, x, 2]), 1e-12)
                                out[q, c, b, a] = np.log(d0 / sigma_ref)
                                out[r3 + q, c, b, a] = np.log(d1 / sigma_ref)
                                out[2 * r3 + q, c, b, a] = np.log(d2 / sigma_ref)
                                out[3 * r3 + q, c, b, a] = sigma[z, y, x, 3] / np.sqrt(d0 * d1)
                                out[4 * r3 + q, c, b, a] = sigma[z, y, x, 4] / np.sqrt(d0 * d2)
                                out[5 * r3 + q, c, b, a] = sigma[z, y, x, 5] / np.sqrt(d1 * d2)
                                out[6 * r3 + q, c, b, a] = 0.0
                            else:
                                for k in range(6):
                                    out[k * r3 + q, c, b, a] = 0.0
                                out[6 * r3 + q, c, b, a] = 1.0
                            out[7 * r3 + q, c, b, a] = source[z, y, x] * share_scale
                            out[8 * r3 + q, c, b, a] = start[z, y, x] / start_scale


def folded_channels(
    sample: PotentialSample, start: np.ndarray, scale: float, sigma_ref: float, factor: int
) -> torch.Tensor:
    """The corrector's input already folded onto the training grid, ``(1, 9 r^3, D/r, H/r, W/r)`` float32: the
    channels of :func:`channels_of` of the unaugmented sample, then
    :func:`~fieldlab.potential.models.fold.space_to_depth`, in one compiled pass over the fine arrays (the path of
    prediction; training augments first and goes through :func:`channels_of`)."""
    spacing = tuple(float(v) for v in sample.spacing)
    source = np.ascontiguousarray(sample.source)
    scale_f = share_scale(source, spacing)
    D, H, W = sample.mask.shape
    r = int(factor)
    out = np.empty((9 * r**3, D // r, H // r, W // r), dtype=np.float32)
    mask = np.ascontiguousarray(sample.mask, dtype=np.bool_)
    args = (np.ascontiguousarray(sample.sigma), mask, source, scale_f, np.ascontiguousarray(start))
    split(_folded, mask.size, 0, D // r, *args, float(scale), float(sigma_ref), r, out)
    return torch.from_numpy(out)[None]
