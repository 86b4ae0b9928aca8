"""FEM at a coarser spacing: the same limb rasterised on a coarser grid, solved by fieldlab's FEM, interpolated.

For a physical spacing ``h`` the continuous limb (its :class:`~fieldlab.potential.physics.phantom.LimbParams`) is
rasterised with partial volumes on the grid ``n_c = round(L / h)`` per axis of the box, solved with the Q1 solver
(:func:`~fieldlab.potential.physics.fem.solver.solve_corners`, the corpus's settings) and its Q1 field evaluated at the
target grid's voxel centres: along an axis of length ``L`` a centre at ``x`` (measured from the box corner) lies in
coarse cell ``j = min(floor(x / h_c), n_c - 1)`` at ``s = x / h_c - j`` with weights ``1 - s`` and ``s`` on corners
``j`` and ``j + 1`` (``h_c = L / n_c``). Spacings need not divide the target grid (3 mm on a 2 mm grid). Weights are
renormalised over the active corners and the result is put in the corpus gauge
(:func:`~fieldlab.potential.physics.fem.transfer.fill_and_gauge`). The seconds include rasterisation and interpolation:
what a user of the classical solver pays for that prediction.

The partial-volume sub-sample lattice keeps the base grid's physical pitch (``phantom.subsamples`` per 2 mm voxel),
so coarse grids see the same geometry, only solved coarser.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from fieldlab.config import PhysicsConfig
from fieldlab.errors import InputError
from fieldlab.potential.physics.fem.solver import solve_corners
from fieldlab.potential.physics.fem.transfer import fill_and_gauge, interpolate_corners
from fieldlab.potential.physics.phantom import Conductivities, LimbParams, Rasterised, rasterise
from fieldlab.potential.physics.sampling import sample_limb, sample_ood_limb

#: Upper bound of partial-volume sub-samples per axis of a coarse voxel (cost grows as its cube).
MAX_SUBSAMPLES = 16


@dataclass(frozen=True)
class FrontPoint:
    """One classical prediction on a target grid: the potential (V, corpus gauge) and what it cost (s)."""

    phi: np.ndarray
    seconds: float
    grid: tuple[int, int, int]


def corpus_limb(record: dict, seed: int, physics: PhysicsConfig) -> tuple[LimbParams, Conductivities]:
    """The continuous limb of one manifest record of a synthetic corpus: its geometry and poles as recorded, its
    tissue tensors re-drawn from the limb's own generator (the fibre tilt is random per limb)."""
    from fieldlab.core.seeding import numpy_rng  # torch: only when a front is computed
    from fieldlab.potential.physics.corpus import SPLIT_STREAM

    try:
        raw = record["limb"]
        limb = LimbParams(
            box_m=tuple(raw["box_m"]),
            radius=raw["radius"],
            ellipticity=raw["ellipticity"],
            taper=raw["taper"],
            skin=raw["skin"],
            fat=raw["fat"],
            bones=tuple(tuple(b) for b in raw["bones"]),
            poles=tuple(tuple(q) for q in raw["poles"]),
            current=raw["current"],
            width=raw["width"],
        )
        split = record["split"].removesuffix("_2x")  # a limb at 2x is the same limb
        index = int(record.get("limb_index", record["index"]))
    except (KeyError, TypeError, ValueError):
        raise InputError(
            f"manifest record {record.get('file', '?')}: no continuous limb (expected a synthetic corpus)"
        ) from None
    rng = numpy_rng(seed, SPLIT_STREAM[split], index)
    if split == "ood":
        _, cond, _ = sample_ood_limb(rng, physics, index)
    else:
        _, cond = sample_limb(rng, physics.phantom, physics.conductivity, physics.source)
    return limb, cond  # type: ignore[arg-type]


def grid_for_spacing(box_m: tuple[float, float, float], h: float) -> tuple[int, int, int]:
    """``(D, H, W)`` cells of spacing closest to ``h`` on the box ``(Lx, Ly, Lz)``.

    Examples
    --------
    >>> grid_for_spacing((0.096, 0.096, 0.192), 0.004)
    (48, 24, 24)
    >>> grid_for_spacing((0.096, 0.096, 0.192), 0.003)
    (64, 32, 32)
    """
    Lx, Ly, Lz = box_m
    return tuple(max(1, round(L / h)) for L in (Lz, Ly, Lx))  # type: ignore[return-value]


def rasterise_at_spacing(
    limb: LimbParams, cond: Conductivities, h: float, physics: PhysicsConfig, base_spacing: float
) -> Rasterised:
    """The limb rasterised at spacing ``h``: the grid closest to ``h`` on the limb's box (:func:`grid_for_spacing`),
    ``phantom.subsamples * h / base_spacing`` partial-volume sub-samples per axis (at least 2, at most
    :data:`MAX_SUBSAMPLES`): the corpus's own pitch, so at ``h = base_spacing`` the limb is rasterised exactly as the
    corpus did."""
    grid = grid_for_spacing(limb.box_m, h)
    subsamples = min(MAX_SUBSAMPLES, max(2, math.ceil(physics.phantom.subsamples * h / base_spacing - 1e-9)))
    return rasterise(limb, cond, grid, subsamples)


def solve_rasterised(r: Rasterised, target_mask: np.ndarray, physics: PhysicsConfig) -> np.ndarray:
    """The FEM solve of the rasterised limb ``r`` (the corpus's solver settings,
    :func:`~fieldlab.potential.physics.fem.solver.solve_corners`) evaluated at the voxel centres of ``target_mask``'s
    grid (module notes): ``(D, H, W)`` volts in the corpus gauge."""
    s = physics.solver
    phi, active, _ = solve_corners(
        r.sigma, r.source, r.spacing, s.tol, maxiter=s.maxiter, method=s.method, max_attempts=s.attempts
    )
    shape = tuple(int(n) for n in target_mask.shape)
    value = interpolate_corners(np.where(active, phi, 0.0), shape)  # type: ignore[arg-type]
    weight = interpolate_corners(active.astype(np.float64), shape)  # type: ignore[arg-type]
    return fill_and_gauge(value, weight, target_mask)


def solve_at_spacing(
    limb: LimbParams,
    cond: Conductivities,
    h: float,
    target_mask: np.ndarray,
    physics: PhysicsConfig,
    base_spacing: float,
) -> FrontPoint:
    """The limb rasterised at spacing ``h`` (:func:`rasterise_at_spacing`), FEM-solved and evaluated on the grid of
    ``target_mask`` (:func:`solve_rasterised`), timed as one.

    ``base_spacing`` is the corpus's base voxel (m): coarse voxels get ``phantom.subsamples * h / base_spacing``
    partial-volume sub-samples per axis, so at ``h = base_spacing`` the limb is rasterised exactly as the corpus did.
    """
    t0 = time.perf_counter()
    r = rasterise_at_spacing(limb, cond, h, physics, base_spacing)
    out = solve_rasterised(r, target_mask, physics)
    return FrontPoint(out, time.perf_counter() - t0, tuple(int(n) for n in r.mask.shape))  # type: ignore[arg-type]
