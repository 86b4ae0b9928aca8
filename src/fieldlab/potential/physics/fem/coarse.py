"""The coarse finite-element prior: the sample restricted to a coarser grid, solved, evaluated at its voxel centres.

The sample's own arrays are restricted to a grid of fixed physical spacing, solved with the Q1 solver, and the
coarse Q1 field is prolonged to the sample's voxel centres.

Coarse grid
-----------
For a coarse spacing ``h`` (``model.prior.coarse_spacing_m``) each axis of the box, ``L = n d`` (``n`` voxels of
size ``d``), holds ``n_c = round(L / h)`` coarse cells. The box must hold a whole number of cells
(``|L / h - n_c| <= 1e-3``), at least 4 per axis, and every coarse cell must be a whole block of ``r = n / n_c``
voxels; the coarse spacing actually used is ``r d`` (``h`` to within ``1e-3 / n_c`` relative). On the default box
(96 x 96 x 192 mm) 4 mm gives 48x24x24 cells and 8 mm 24x12x12, from the 96x48x48 base grid (2 mm, r = 2 or 4)
and from the 192x96x96 grid (1 mm, r = 4 or 8) alike: the prior is one function of position at every resolution.

Restriction (coarse cell ``C``, its voxels ``v``, tissue mask ``m``, voxel volume ``dV``)
------------------------------------------------------------------------------------------

    t_C     = mean_v m_v                                        tissue fraction
    sigma_C = sum_v m_v sigma_v / sum_v m_v   if t_C >= 1/2,    else 0 (air)
    I_C     = sum_v f_v dV                                      current (A), so f_C = I_C / V_C

The tensor is the arithmetic mean over the cell's tissue (air never blends in), and the current of every coarse
cell is the sum over its voxels, so the total current is kept to round-off and a source with zero net current stays
so. Coarse tissue cells not 26-connected (Q1 elements sharing a corner are coupled) to the largest tissue component
become air: a detached island would make the Neumann system singular. Current that lands in coarse air is refused
(:class:`InputError`) unless it is below :data:`AIR_CURRENT_RTOL` (1 %) of the injected current ``sum_{I_C > 0} I_C``
(the Gaussian tails of a pole a few mm from the fat reach the skin: at most 0.2 % at 8 mm and 0.001 % at 4 mm over
36 limbs of the default phantom);
such a remainder is moved to the nearest coarse tissue cell, at most a few cells away, so the total stays exact and
the prior changes by far less than its own discretisation error.

Solve and prolongation
----------------------
:func:`~fieldlab.potential.physics.fem.solver.solve_corners` solves the coarse problem with the same settings as the
corpus; its unknowns are the coarse cell corners, and in a tissue cell the Q1 solution is the trilinear interpolant
of the cell's 8 corners. The prior at a fine voxel centre is that interpolant, evaluated exactly: along each axis
fine voxel ``i`` lies in coarse cell ``j = i // r`` at the local coordinate ``s = (i mod r + 1/2) / r``, with weights
``1 - s`` on corner ``j`` and ``s`` on corner ``j + 1``. Where some of the 8 corners touch no coarse tissue cell
(fine tissue in a coarse air cell) the weights are renormalised over the active corners; a fine tissue voxel with no
active corner takes the value of the nearest one that has some. Finally the prior is put in the corpus gauge: zero
mean over the sample's tissue voxels, zero in air (as :func:`~fieldlab.potential.physics.fem.solver.solve_potential`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from fieldlab.errors import ConfigError, InputError
from fieldlab.potential.physics.fem.blocks import block_sums
from fieldlab.potential.physics.fem.solver import DEFAULT_METHOD, SolveInfo, solve_corners
from fieldlab.potential.physics.fem.transfer import prolong
from fieldlab.potential.schema import PotentialSample, refinement

#: The parameter every error of this module names.
PARAM = "model.prior.coarse_spacing_m"
#: Least number of coarse cells per axis.
MIN_CELLS = 4
#: How far from a whole number of coarse cells the box may be, in cells (the spacing is stored as float32).
WHOLE_CELLS_ATOL = 1e-3
#: Current landing in coarse air, relative to the injected current, above which the restriction is refused.
AIR_CURRENT_RTOL = 1e-2


@dataclass(frozen=True)
class CoarseGrid:
    """A coarse grid over the box of a fine one: ``shape`` (D, H, W) cells, ``factor`` fine voxels per coarse cell
    along (D, H, W), ``spacing`` (dx, dy, dz) of a coarse cell in metres."""

    shape: tuple[int, int, int]
    factor: tuple[int, int, int]
    spacing: tuple[float, float, float]


@dataclass(frozen=True)
class CoarseProblem:
    """A restricted sample: ``sigma`` (D, H, W, 6) S/m, ``source`` (D, H, W) A/m^3, ``fraction`` (D, H, W) tissue
    fraction, ``mask`` (D, H, W) coarse tissue, on ``grid``; ``moved_a`` the current (A) moved out of coarse air."""

    sigma: np.ndarray
    source: np.ndarray
    fraction: np.ndarray
    mask: np.ndarray
    grid: CoarseGrid
    moved_a: float


def coarse_grid(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], coarse_spacing_m: float
) -> CoarseGrid:
    """The coarse grid of spacing ``coarse_spacing_m`` over the box of ``shape`` (D, H, W) voxels of ``spacing``
    (dx, dy, dz); :class:`ConfigError` naming ``model.prior.coarse_spacing_m`` when it does not tile the grid.

    Examples
    --------
    >>> coarse_grid((96, 48, 48), (2e-3, 2e-3, 2e-3), 8e-3).shape
    (24, 12, 12)
    >>> coarse_grid((192, 96, 96), (1e-3, 1e-3, 1e-3), 8e-3).factor
    (8, 8, 8)
    """
    h = float(coarse_spacing_m)
    if not (np.isfinite(h) and h > 0):
        raise ConfigError(f"{PARAM} = {coarse_spacing_m!r}: expected a positive length in metres")
    d = np.array([float(spacing[2]), float(spacing[1]), float(spacing[0])])  # per array axis (D, H, W)
    n = np.array(shape, dtype=np.int64)
    box = n * d
    cells = box / h
    n_c = np.rint(cells).astype(np.int64)
    box_txt = "(Lz, Ly, Lx) = (" + ", ".join(f"{v:.6g}" for v in box) + ") m"
    if np.any(n_c < MIN_CELLS):
        raise ConfigError(
            f"{PARAM} = {h:g} m leaves {tuple(int(c) for c in n_c)} coarse cells along (D, H, W) of the box "
            f"{box_txt}; expected at least {MIN_CELLS} per axis (a smaller spacing)"
        )
    if np.any(np.abs(cells - n_c) > WHOLE_CELLS_ATOL):
        raise ConfigError(
            f"{PARAM} = {h:g} m divides the box {box_txt} into ("
            + ", ".join(f"{c:.4g}" for c in cells)
            + ") cells; expected a spacing that tiles it with whole cells"
        )
    factor = refinement(tuple(n), tuple(n_c))
    if factor is None:
        raise ConfigError(
            f"{PARAM} = {h:g} m gives a {'x'.join(map(str, n_c))} coarse grid, of which the sample grid "
            f"{'x'.join(map(str, n))} (D, H, W) is not a whole multiple; expected a spacing that is a whole "
            f"number of voxels ({', '.join(f'{v:.6g}' for v in d)} m along D, H, W)"
        )
    dz, dy, dx = (float(v) * r for v, r in zip(d, factor, strict=True))
    return CoarseGrid(tuple(int(c) for c in n_c), factor, (dx, dy, dz))  # type: ignore[arg-type]


def restrict(
    sigma: np.ndarray,
    source: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    coarse_spacing_m: float,
    partial_volume: bool = False,
) -> CoarseProblem:
    """Restrict ``sigma`` (D, H, W, 6) S/m, ``source`` (D, H, W) A/m^3 and the tissue ``mask`` to the coarse grid
    of ``coarse_spacing_m`` (see the module notes: air-aware tensor mean, current summed cell by cell).

    ``partial_volume``: every coarse cell holding some tissue is tissue, with the tensor mean times its tissue
    fraction (the conductance of a half-filled cell is half its tissue's), instead of the ``t_C >= 1/2`` rule. The
    rule's ties (half the fine voxels of a boundary cell are tissue, common on a 2x grid) all count as full tissue,
    which grows the limb's conducting shell and lowers the potential everywhere (about 1 % at 2 mm from 1 mm); the
    partial-volume cell keeps the boundary's conductance.

    Raises
    ------
    ConfigError
        The spacing does not tile the grid, or leaves fewer than 4 cells along an axis.
    InputError
        More than ``AIR_CURRENT_RTOL`` of the current lands in coarse air.
    """
    grid = coarse_grid(tuple(mask.shape), spacing, coarse_spacing_m)  # type: ignore[arg-type]
    count, sums, current = block_sums(sigma, source, mask, grid.factor)
    fraction = count / float(np.prod(grid.factor))
    tissue = fraction > 0 if partial_volume else fraction >= 0.5
    labels, n_parts = ndimage.label(tissue, structure=np.ones((3, 3, 3), dtype=bool))
    if n_parts > 1:  # keep the largest 26-connected component
        sizes = np.bincount(labels.ravel())[1:]
        tissue = labels == 1 + int(np.argmax(sizes))
    coarse_sigma = np.where(tissue[..., None], sums / np.maximum(count, 1.0)[..., None], 0.0)
    if partial_volume:
        coarse_sigma *= fraction[..., None]
    dV = float(np.prod(np.asarray(spacing, dtype=np.float64)))
    current *= dV  # I_C in A
    moved = _move_air_current(current, tissue, coarse_spacing_m)
    cell_volume = float(np.prod(grid.spacing))
    return CoarseProblem(coarse_sigma, current / cell_volume, fraction, tissue, grid, moved)


def _move_air_current(current: np.ndarray, tissue: np.ndarray, coarse_spacing_m: float) -> float:
    """Refuse current in coarse air above ``AIR_CURRENT_RTOL``; move the rest to the nearest tissue cell (in place)."""
    air = ~tissue & (current != 0)
    if not air.any():
        return 0.0
    stray = float(np.abs(current[air]).sum())
    injected = float(current[current > 0].sum())
    if stray > AIR_CURRENT_RTOL * injected:
        first = tuple(int(i) for i in np.argwhere(air)[np.argmax(np.abs(current[air]))])
        raise InputError(
            f"source: {stray:.3e} A of the {injected:.3e} A injected lands in coarse cells that are air (tissue "
            f"fraction < 1/2) at {PARAM} = {coarse_spacing_m:g} m, most at coarse cell (d, h, w) = {first}; "
            f"expected the source inside coarse tissue: use a smaller {PARAM}"
        )
    # index of the nearest tissue cell for every cell: "nearest" along the array axes (the grid is isotropic)
    nearest = ndimage.distance_transform_edt(~tissue, return_distances=False, return_indices=True)
    target = tuple(ix[air] for ix in nearest)
    np.add.at(current, target, current[air])
    current[air] = 0.0
    return stray


def coarse_fem_prior(
    sample: PotentialSample,
    coarse_spacing_m: float,
    *,
    tol: float = 1e-8,
    maxiter: int = 300,
    method: str = DEFAULT_METHOD,
    max_attempts: int = 3,
    partial_volume: bool = False,
) -> tuple[np.ndarray, SolveInfo]:
    """The coarse-FEM prior of ``sample``: restrict, solve, prolong, gauge (see the module notes).

    Parameters
    ----------
    sample
        The sample; only ``sigma``, ``source``, ``mask`` and ``spacing`` are read.
    coarse_spacing_m
        Coarse cell size in metres (``model.prior.coarse_spacing_m``).
    tol, maxiter, method, max_attempts
        Solver settings, as :func:`~fieldlab.potential.physics.fem.solver.solve_potential` (``physics.solver``).
    partial_volume
        Restrict with partial-volume boundary cells (:func:`restrict`).

    Returns
    -------
    prior : ``(D, H, W)`` float64 potential in volts on the sample's grid, zero mean over tissue, zero in air.
    info : the coarse solve's :class:`SolveInfo`.
    """
    spacing = tuple(float(s) for s in sample.spacing)
    problem = restrict(sample.sigma, sample.source, sample.mask, spacing, coarse_spacing_m, partial_volume)  # type: ignore[arg-type]
    phi, active, info = solve_corners(
        problem.sigma,
        problem.source,
        problem.grid.spacing,
        tol,
        maxiter=maxiter,
        method=method,
        max_attempts=max_attempts,
    )
    return prolong(phi, active, problem.grid.factor, sample.mask), info
