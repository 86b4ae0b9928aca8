"""Trilinear transfer of a voxel-centre field between any two grids on the same box: the interpolation baseline.

A field known at the voxel centres of a ``(D, H, W)`` grid tiling a box is mapped to the voxel centres of another
grid ``(D', H', W')`` tiling the same box: any shapes, whole or fractional factors (1.5x), anisotropic (one axis
refined, the others not), finer or coarser. Along each axis a target centre between two source centres takes their
linear weights; a target centre beyond the outermost source centre (the half cell at each end of the box) takes the
outermost value (constant extension). This is the map of ``torch.nn.functional.interpolate(mode="trilinear",
align_corners=False)`` that :meth:`~fieldlab.potential.models.wrapper.PotentialModel.predict_restricted` applies, so
the interpolation baseline (the model on the training grid, its prediction carried to a finer grid) can be computed
and checked here in float64.

:func:`prolong_centres` is the tissue-aware version, with the edge handling of the Q1 prolongation
(:func:`~fieldlab.potential.physics.fem.transfer.prolong`): the weights are renormalised over the source's tissue
voxels (air never blends into tissue), a target tissue voxel that no source tissue voxel reaches takes the value of
the nearest one that some does, and the result is in the corpus gauge (zero mean over the target tissue, zero in
air; :func:`~fieldlab.potential.physics.fem.transfer.fill_and_gauge`).
"""

from __future__ import annotations

import numpy as np

from fieldlab.errors import InputError
from fieldlab.potential.physics.fem.transfer import fill_and_gauge


def centre_weights(n_source: int, n_target: int) -> np.ndarray:
    """``(n_target, n_source)`` linear weights of the source voxel centres at the target voxel centres of one axis.

    Both grids tile the same interval; a target centre outside the span of the source centres takes the outermost
    source value.

    Examples
    --------
    >>> centre_weights(2, 4)
    array([[1.  , 0.  ],
           [0.75, 0.25],
           [0.25, 0.75],
           [0.  , 1.  ]])
    >>> centre_weights(2, 3)
    array([[1. , 0. ],
           [0.5, 0.5],
           [0. , 1. ]])
    """
    if n_source < 1 or n_target < 1:
        raise InputError(f"grid sizes {n_source} -> {n_target}: expected at least one voxel per axis")
    x = (np.arange(n_target) + 0.5) * n_source / n_target - 0.5  # target centres in source-centre units
    x = np.clip(x, 0.0, n_source - 1)
    j = np.minimum(np.floor(x).astype(int), max(n_source - 2, 0))
    s = x - j
    w = np.zeros((n_target, n_source))
    w[np.arange(n_target), j] = 1.0 - s
    if n_source > 1:
        w[np.arange(n_target), j + 1] += s
    return w


def _shape3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3 or min(int(n) for n in shape) < 1:
        raise InputError(f"shape = {tuple(shape)!r}: expected three positive integers (D, H, W)")
    return tuple(int(n) for n in shape)  # type: ignore[return-value]


def interpolate_centres(field: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``(D, H, W)`` values at voxel centres -> ``shape`` trilinear values at the voxel centres of the same box.

    Examples
    --------
    >>> interpolate_centres(np.arange(2.0).reshape(2, 1, 1), (4, 1, 1)).ravel()
    array([0.  , 0.25, 0.75, 1.  ])
    """
    field = np.asarray(field, dtype=np.float64)
    if field.ndim != 3:
        raise InputError(f"field has shape {field.shape}: expected (D, H, W) values at voxel centres")
    shape = _shape3(shape)
    wd, wh, ww = (centre_weights(n, m) for n, m in zip(field.shape, shape, strict=True))
    out = np.einsum("ad,dhw->ahw", wd, field)  # a target D, d source D
    out = np.einsum("bh,ahw->abw", wh, out)  # b target H
    return np.einsum("cw,abw->abc", ww, out)  # c target W


def prolong_centres(
    u: np.ndarray, mask: np.ndarray, shape: tuple[int, int, int], target_mask: np.ndarray
) -> np.ndarray:
    """The tissue field ``u`` (source ``mask``) at the voxel centres of ``shape`` over ``target_mask`` (module notes).

    Returns a ``shape`` float64 field, zero-mean over ``target_mask`` and zero elsewhere; where every source voxel
    that a target voxel reads is tissue, the value is :func:`interpolate_centres` of ``u`` (less the gauge constant).
    """
    mask = np.asarray(mask, dtype=bool)
    target_mask = np.asarray(target_mask, dtype=bool)
    if np.shape(u) != mask.shape:
        raise InputError(f"u has shape {np.shape(u)} and mask {mask.shape}: expected the same (D, H, W)")
    if target_mask.shape != _shape3(shape):
        raise InputError(f"target_mask has shape {target_mask.shape}: expected {tuple(shape)}")
    value = interpolate_centres(np.where(mask, u, 0.0), shape)
    weight = interpolate_centres(mask.astype(np.float64), shape)
    return fill_and_gauge(value, weight, target_mask)
