"""The rivals on the stencil core: multigrid-CG on the sample's own system, and nested iteration from a coarser grid.

Both use the solver the corpus uses (:mod:`~fieldlab.potential.physics.fem.mfsolve`: 27-point stencils from the voxel
tensors, Galerkin coarse stencils, a float32 V-cycle inside float64 CG) and pay for all of it from the sample's arrays:
the solver's checks, the stencil and its load, the levels, the start, the iterations, the map to voxel centres.

- ``cg_mf[_warm]_k<k>`` (:func:`mf_cg_curve`): CG from zero, or from a guess at voxel centres (a prior, whose own
  cost the caller adds), stopped after ``k`` iterations, as :func:`~.cg.cg_curve` on the assembled system;
  ``cg_fmg_k<k>`` the same from full multigrid on the Galerkin levels (the corpus's ``fmg`` solver stopped early);
- ``nested_<N>mm_k<k>`` (:func:`nested_curve`): the sample restricted to cells of ``N`` mm (the training grid at 2x),
  solved there, prolonged to the fine corners and improved by ``k`` CG iterations on the sample's own 1 mm system
  (:func:`~fieldlab.potential.physics.fem.stencil_solve.nested`), ``k = 0`` the prolonged coarse solve alone: the
  classical route of a predictor that starts from a coarse solve.
"""

from __future__ import annotations

import time

import numpy as np

from fieldlab.errors import InputError
from fieldlab.potential.evaluation.classical.curve import Curve, Recorder, start_corners, step_counts, timed_curve
from fieldlab.potential.physics.fem.stencil_solve import nested, stopped_cg
from fieldlab.potential.prediction.classical import sample_arrays
from fieldlab.potential.schema import PotentialSample


def nested_name(h: float, k: int) -> str:
    """``nested_<N>mm_k<k>``: a key of ``eval_sr.json: baselines``.

    Examples
    --------
    >>> nested_name(0.002, 1)
    'nested_2mm_k1'
    """
    return f"nested_{h * 1e3:g}mm_k{k}"


def mf_cg_curve(
    sample: PotentialSample,
    iterations: tuple[int, ...],
    start: np.ndarray | None = None,
    full_multigrid: bool = False,
) -> Curve:
    """Multigrid-CG on stencils on ``sample``'s own system, its potential after each count of ``iterations``; from
    ``start`` (voxel centres), from full multigrid on the Galerkin levels (``full_multigrid``: the corpus's ``fmg``
    solver stopped early) or from zero.

    Examples
    --------
    >>> from fieldlab.potential.physics.fem.solver import solve_potential
    >>> sigma = np.zeros((8, 8, 8, 6)); sigma[..., :3] = 1.0
    >>> f = np.zeros((8, 8, 8)); f[2, 2, 2], f[5, 5, 5] = 1.0, -1.0
    >>> z = np.zeros((8, 8, 8))
    >>> s = PotentialSample(sigma, f, z == 0, z.astype(np.uint8), z, (1.0, 1.0, 1.0), np.zeros((2, 3)),
    ...                     np.zeros((2, 3), dtype=np.int64))
    >>> u, _ = solve_potential(sigma, f, (1.0, 1.0, 1.0), 1e-10)
    >>> c = mf_cg_curve(s, (1, 8))
    >>> [bool(np.linalg.norm(v - u) < 1e-3 * np.linalg.norm(u)) for v in c.fields]  # 1 iteration is not enough
    [False, True]
    """
    if full_multigrid and 0 in iterations:  # full multigrid alone is a point of its curve
        counts = (0, *step_counts([k for k in iterations if k != 0] or [1], "rival iterations", "CG iteration"))
    else:
        counts = step_counts(iterations, "rival iterations", "CG iteration")
    t0 = time.perf_counter()
    sigma, source, spacing = sample_arrays(sample)
    recorder = Recorder()
    warm = None if start is None or full_multigrid else (lambda nodes, mask: start_corners(start, nodes, mask))
    x, to_field = stopped_cg(
        sigma, source, spacing, max(counts), full_multigrid=full_multigrid, start=warm, record=recorder
    )
    recorder.complete(max(counts) + int(full_multigrid), x)
    return timed_curve(counts, recorder, to_field, t0, recorded_start=full_multigrid)


def nested_curve(sample: PotentialSample, h: float, iterations: tuple[int, ...]) -> Curve:
    """Nested iteration on ``sample`` from cells of ``h`` metres, its potential after each count of ``iterations``
    fine CG iterations (0: the prolonged coarse solve), seconds from the fine arrays (module notes).

    Raises
    ------
    InputError
        A negative count, or a sample that fails the solver's checks.
    ConfigError
        ``h`` does not tile ``sample``'s grid with whole blocks of voxels.
    """
    counts = tuple(int(k) for k in iterations)
    if not counts or min(counts) < 0:
        raise InputError(f"eval.nested_iterations = {list(counts)}; expected CG iteration counts >= 0")
    t0 = time.perf_counter()
    sigma, source, spacing = sample_arrays(sample)
    convert = time.perf_counter() - t0
    run = nested(sigma, source, spacing, h, steps=counts, accel="cg")
    return Curve(run.steps, tuple(s + convert for s in run.seconds), tuple(run.fields))
