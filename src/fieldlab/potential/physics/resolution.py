"""Agreement of a base-grid potential with the same limb solved on a grid refined by an integer factor."""

from __future__ import annotations

import numpy as np


def block_mean(fine: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor^3`` blocks: ``(f D, f H, f W) -> (D, H, W)``, i.e. the fine field at coarse voxels."""
    D, H, W = (n // factor for n in fine.shape)
    return fine.reshape(D, factor, H, factor, W, factor).mean(axis=(1, 3, 5))


def distance_to_points(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], points: np.ndarray
) -> np.ndarray:
    """``(D, H, W)`` distance (m) from each voxel centre to the nearest of ``points`` ((P, 3) physical (x, y, z)).

    The grid is the centred box ``[-n h / 2, n h / 2]`` per axis, as in :mod:`fieldlab.potential.physics.phantom`.
    """
    D, H, W = shape
    dx, dy, dz = spacing
    z = (np.arange(D) + 0.5 - D / 2) * dz
    y = (np.arange(H) + 0.5 - H / 2) * dy
    x = (np.arange(W) + 0.5 - W / 2) * dx
    out = np.full(shape, np.inf)
    for px, py, pz in np.asarray(points, dtype=np.float64).reshape(-1, 3):
        r = np.sqrt((z[:, None, None] - pz) ** 2 + (y[None, :, None] - py) ** 2 + (x[None, None, :] - px) ** 2)
        out = np.minimum(out, r)
    return out


def relative_l2_agreement(
    u: np.ndarray,
    mask: np.ndarray,
    u_fine: np.ndarray,
    mask_fine: np.ndarray,
    spacing: tuple[float, float, float],
    points: np.ndarray,
    exclude_m: float,
) -> float:
    """Relative L2 difference ``||u - P u_fine|| / ||P u_fine||`` away from the source.

    ``P`` is the ``factor^3`` block mean (``factor = u_fine.shape[0] // u.shape[0]``); the comparison runs over
    base voxels that are tissue at both resolutions and farther than ``exclude_m`` from every pole; the mean over
    that region is removed from each field first (the gauges differ by a constant).
    """
    factor = u_fine.shape[0] // u.shape[0]
    coarse = block_mean(u_fine, factor)
    both = mask & block_mean(mask_fine.astype(np.float64), factor).__eq__(1.0)
    region = both & (distance_to_points(u.shape, spacing, points) > exclude_m)
    a = u[region] - u[region].mean()
    b = coarse[region] - coarse[region].mean()
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
