"""Transfers of the Q1 field: corners <-> voxel centres, coarse corners -> fine centres, and the corpus gauge.

The finite-element solution lives on voxel corners; the corpus, the models and every score live on voxel centres.
Each transfer is written once here: :func:`corners_to_centres` (the Q1 field at a centre is the mean of its eight
corners), its approximate inverse :func:`centres_to_corners` (the start of the hybrid's sweeps, the rivals' warm
starts and the error estimate), trilinear interpolation of coarse corners at fine centres (:func:`corner_weights`,
:func:`interpolate_corners`; :func:`prolong` with the compiled kernel of :mod:`~.blocks`) and the corpus gauge
(:func:`gauge`: zero mean over tissue, zero in air).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fieldlab.potential.physics.fem.assembly import CORNERS
from fieldlab.potential.physics.fem.blocks import WEIGHT_MIN, prolong_values

#: Correction sweeps of the centre-to-corner transfer.
SWEEPS = 2


def corners_to_centres(u_nodes: np.ndarray, nodes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Q1 field at voxel centres: the mean of the 8 corner values; zero in air."""
    D, H, W = mask.shape
    full = np.zeros((D + 1) * (H + 1) * (W + 1))
    full[nodes] = u_nodes
    full = full.reshape(D + 1, H + 1, W + 1)
    u = sum(full[c[0] : c[0] + D, c[1] : c[1] + H, c[2] : c[2] + W] for c in CORNERS) / 8.0
    return np.where(mask, u, 0.0)


def centres_to_corners(u: np.ndarray, nodes: np.ndarray, mask: np.ndarray, sweeps: int = SWEEPS) -> np.ndarray:
    """Corner values ``x`` over ``nodes`` whose voxel means ``C x`` reproduce the centre field ``u`` on tissue.

    The start ``x_0 = P u`` gives each corner the mean of ``u`` over its (up to eight) tissue voxels, the transpose
    of ``C`` scaled to preserve constants (second order at interior corners for a smooth ``u``); each sweep adds the
    transferred defect, ``x_{j+1} = x_j + P (u - C x_j)``, which shrinks ``u - C x`` for the smooth part of ``u``.
    ``C`` has a null space (the corner checkerboard) that no sweep touches, so ``x`` stays smooth. The
    estimate is exact for any ``x`` (module notes); a closer ``x`` leaves less to the V-cycles.

    Parameters
    ----------
    u
        ``(D, H, W)`` field at voxel centres; only tissue values are read.
    nodes
        Flat indices of the active corners in the ``(D+1, H+1, W+1)`` grid (:func:`~.solver.assemble`).
    mask
        ``(D, H, W)`` bool tissue voxels.
    sweeps
        Defect corrections after the start.

    Examples
    --------
    >>> mask = np.ones((2, 2, 2), dtype=bool)
    >>> nodes = np.arange(27)
    >>> x = centres_to_corners(np.full((2, 2, 2), 3.0), nodes, mask)
    >>> bool(np.allclose(x, 3.0))
    True
    """
    D, H, W = mask.shape
    counts = np.zeros((D + 1, H + 1, W + 1))
    for c in CORNERS:
        counts[c[0] : c[0] + D, c[1] : c[1] + H, c[2] : c[2] + W] += mask
    weight = 1.0 / counts.ravel()[nodes]  # every active corner touches at least one tissue voxel

    def transfer(v: np.ndarray) -> np.ndarray:
        full = np.zeros((D + 1, H + 1, W + 1))
        v = np.where(mask, v, 0.0)
        for c in CORNERS:
            full[c[0] : c[0] + D, c[1] : c[1] + H, c[2] : c[2] + W] += v
        return full.ravel()[nodes] * weight

    x = transfer(u)
    for _ in range(sweeps):
        x = x + transfer(u - corners_to_centres(x, nodes, mask))
    return x


def corner_weights(n_coarse: int, n_fine: int) -> np.ndarray:
    """``(n_fine, n_coarse + 1)`` linear weights of the coarse corners at the fine voxel centres of one axis.

    Examples
    --------
    >>> corner_weights(1, 2)
    array([[0.75, 0.25],
           [0.25, 0.75]])
    >>> corner_weights(2, 3).round(3)
    array([[0.667, 0.333, 0.   ],
           [0.   , 1.   , 0.   ],
           [0.   , 0.333, 0.667]])
    """
    x = (np.arange(n_fine) + 0.5) * n_coarse / n_fine  # fine centres in coarse-cell units
    j = np.minimum(np.floor(x).astype(int), n_coarse - 1)
    s = x - j
    w = np.zeros((n_fine, n_coarse + 1))
    w[np.arange(n_fine), j] = 1.0 - s
    w[np.arange(n_fine), j + 1] = s
    return w


def interpolate_corners(corners: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``(Dc+1, Hc+1, Wc+1)`` corner values -> ``shape`` trilinear values at the voxel centres of the same box."""
    wd, wh, ww = (corner_weights(n - 1, m) for n, m in zip(corners.shape, shape, strict=True))
    out = np.einsum("ad,dhw->ahw", wd, corners)  # a target D, d coarse D corners
    out = np.einsum("bh,ahw->abw", wh, out)  # b target H
    return np.einsum("cw,abw->abc", ww, out)  # c target W


def trilinear(corners: np.ndarray, factor: tuple[int, int, int]) -> np.ndarray:
    """``(Dc+1, Hc+1, Wc+1)`` corner values -> ``(Dc rd, Hc rh, Wc rw)`` trilinear values at the fine centres."""
    shape = tuple((n - 1) * r for n, r in zip(corners.shape, factor, strict=True))
    return interpolate_corners(corners, shape)  # type: ignore[arg-type]


def prolong(phi: np.ndarray, active: np.ndarray, factor: tuple[int, int, int], mask: np.ndarray) -> np.ndarray:
    """The coarse Q1 field (corner values ``phi``, ``active`` corners) at the fine voxel centres of ``mask``.

    Returns a ``(D, H, W)`` float64 field in the corpus gauge: zero mean over ``mask``, zero elsewhere. Weights are
    renormalised over the active corners; a tissue voxel with none takes the value of the nearest one that has some.
    """
    out = prolong_values(phi, active, factor)
    return fill_undefined(out, np.isnan(out), mask)


def gauge(u: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """The corpus gauge, in place (returned): zero mean over ``tissue``, zero outside it.

    Examples
    --------
    >>> gauge(np.array([1.0, 3.0, 7.0]), np.array([True, True, False]))
    array([-1.,  1.,  0.])
    """
    tissue = np.asarray(tissue, dtype=bool)
    if tissue.any():
        u[tissue] -= u[tissue].mean()
    u[~tissue] = 0.0
    return u


def fill_and_gauge(value: np.ndarray, weight: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``value / weight`` where some active corner contributes, nearest-filled elsewhere, in the corpus gauge.

    ``value`` and ``weight`` are the interpolated ``phi * active`` and ``active``; the result is zero-mean over
    ``mask`` and zero outside it.
    """
    defined = weight > WEIGHT_MIN
    out = np.where(defined, value / np.where(defined, weight, 1.0), 0.0)
    return fill_undefined(out, ~defined, mask)


def fill_undefined(out: np.ndarray, undefined: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``out`` (in place) with each ``mask`` voxel where it is ``undefined`` set to the nearest defined value, in the
    corpus gauge (zero mean over ``mask``, zero outside it)."""
    tissue = np.asarray(mask, dtype=bool)
    orphans = tissue & undefined
    if orphans.any():
        nearest = ndimage.distance_transform_edt(undefined, return_distances=False, return_indices=True)
        out[orphans] = out[tuple(ix[orphans] for ix in nearest)]
    return gauge(out, tissue)
