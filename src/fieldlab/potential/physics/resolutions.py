"""Named resolutions of the same continuous limb: each one's grid on the base box and the sample solved on it.

The corpus builds every limb on the base grid ``data.grid`` and, for the zero-shot test, on the grid refined by 2
(:mod:`~fieldlab.potential.physics.corpus`). The resolution study needs the same limb on grids no model trained
on: a fractional refinement (1.5x) and anisotropic voxels (the base spacing along the limb axis D, half of it
across H and W). :data:`RESOLUTIONS` names each grid by its refinement of the base grid per axis (D, H, W); on the
default base grid (96, 48, 48) over the default box (2 mm voxels):

=========  ==============  ================================
name       grid            spacing (dx, dy, dz)
=========  ==============  ================================
base       96 x 48 x 48    2 mm
1.5x       144 x 72 x 72   1.33 mm
2x         192 x 96 x 96   1 mm
aniso      96 x 96 x 96    1 mm across, 2 mm along the axis
=========  ==============  ================================

The box, the limb and its continuous source are the same on every grid (the phantom's partial volumes and its
source of fixed physical width); only the rasterisation and the FEM solve change. Partial volumes are sampled with
``max(2, ceil(n / r))`` sub-samples per voxel and axis, ``n = physics.phantom.subsamples`` and ``r`` the smallest
refinement of the grid, the corpus's rule for 2x: at least the base grid's physical density along every axis.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from fieldlab.config import PhysicsConfig
from fieldlab.errors import InputError
from fieldlab.potential.physics.corpus import SPLIT_STREAM
from fieldlab.potential.physics.fem.solver import SolveInfo, solve_potential
from fieldlab.potential.physics.phantom import Conductivities, LimbParams, rasterise
from fieldlab.potential.physics.sampling import sample_limb, sample_ood_limb
from fieldlab.potential.schema import PotentialSample

#: Resolution name -> refinement of the base grid along (D, H, W).
RESOLUTIONS: dict[str, tuple[Fraction, Fraction, Fraction]] = {
    "base": (Fraction(1), Fraction(1), Fraction(1)),
    "1.5x": (Fraction(3, 2), Fraction(3, 2), Fraction(3, 2)),
    "2x": (Fraction(2), Fraction(2), Fraction(2)),
    "aniso": (Fraction(1), Fraction(2), Fraction(2)),
}


def resolution_shape(name: str, grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """The grid ``(D, H, W)`` of resolution ``name`` over the base ``grid``.

    Examples
    --------
    >>> resolution_shape("1.5x", (96, 48, 48)), resolution_shape("aniso", (96, 48, 48))
    ((144, 72, 72), (96, 96, 96))

    Raises
    ------
    InputError
        An unknown name, or a base grid that the refinement does not take to whole voxels (1.5x of an odd size).
    """
    if name not in RESOLUTIONS:
        raise InputError(f"resolution {name!r}: expected one of {', '.join(RESOLUTIONS)}")
    if len(grid) != 3 or min(int(n) for n in grid) < 1:
        raise InputError(f"grid = {tuple(grid)!r}: expected three positive integers (D, H, W)")
    scaled = [int(n) * r for n, r in zip(grid, RESOLUTIONS[name], strict=True)]
    if any(s.denominator != 1 for s in scaled):
        raise InputError(
            f"resolution {name!r} of grid {tuple(grid)}: {[str(s) for s in scaled]} voxels; "
            "expected whole numbers (use a base grid divisible by the refinement's denominator)"
        )
    return tuple(int(s) for s in scaled)  # type: ignore[return-value]


def grid_subsamples(subsamples: int, grid: tuple[int, int, int], shape: tuple[int, int, int]) -> int:
    """Partial-volume sub-samples per voxel and axis on ``shape`` for ``subsamples`` on the base ``grid``.

    Examples
    --------
    >>> [grid_subsamples(4, (96, 48, 48), s) for s in [(96, 48, 48), (144, 72, 72), (192, 96, 96), (96, 96, 96)]]
    [4, 3, 2, 4]
    """
    finest = min(Fraction(int(s), int(g)) for s, g in zip(shape, grid, strict=True))
    return max(2, -(-Fraction(int(subsamples)) // finest))


def solve_limb_on(
    limb: LimbParams,
    cond: Conductivities,
    grid: tuple[int, int, int],
    shape: tuple[int, int, int],
    physics: PhysicsConfig,
) -> tuple[PotentialSample, SolveInfo]:
    """``limb`` rasterised on ``shape`` (a refinement of the base ``grid``, :func:`grid_subsamples`) and solved by
    the FEM with ``physics.solver``; the sample in the corpus's format."""
    r = rasterise(limb, cond, tuple(shape), grid_subsamples(physics.phantom.subsamples, grid, shape))  # type: ignore[arg-type]
    s = physics.solver
    u, info = solve_potential(
        r.sigma, r.source, r.spacing, s.tol, maxiter=s.maxiter, method=s.method, max_attempts=s.attempts
    )
    sample = PotentialSample(
        r.sigma, r.source, r.mask, r.tissue, u, np.array(r.spacing), r.source_point, r.source_index
    )
    return sample, info


def solve_resolution(
    seed: int, split: str, index: int, grid: tuple[int, int, int], name: str, physics: PhysicsConfig
) -> tuple[PotentialSample, SolveInfo, LimbParams]:
    """Limb ``index`` of ``split`` (the corpus's draw) at resolution ``name`` of the base ``grid``, solved.

    At ``base`` and ``2x`` this is the corpus's sample (``corpus.solve_sample`` at factor 1 and 2), array for array.
    """
    from fieldlab.core.seeding import numpy_rng  # seeding imports torch: only solving needs it, as in the corpus

    if split not in SPLIT_STREAM:
        raise InputError(f"split {split!r}: expected one of {', '.join(SPLIT_STREAM)}")
    shape = resolution_shape(name, grid)
    rng = numpy_rng(seed, SPLIT_STREAM[split], index)
    if split == "ood":
        limb, cond, _ = sample_ood_limb(rng, physics, index)
    else:
        limb, cond = sample_limb(rng, physics.phantom, physics.conductivity, physics.source)
    sample, info = solve_limb_on(limb, cond, grid, shape, physics)
    return sample, info, limb
