"""The hybrid's last step: a few sweeps of the sample's own finite-element system, started from a prediction.

A trained operator's error is broadband; the sample's Q1 system (:mod:`fieldlab.potential.physics.fem.solver`) knows
the exact discrete problem, and a symmetric Gauss-Seidel sweep damps the high-frequency part of any error at the
cost of one pass over the matrix. The refinement of a centre field ``u`` is

    x_0 = P u,   x_k = S^k(x_0; A, b),   u_k = C x_k + c,

with ``P`` the centre-to-corner transfer (:func:`~fieldlab.potential.physics.fem.transfer.centres_to_corners`), ``C``
the corner-to-centre mean (:func:`~fieldlab.potential.physics.fem.transfer.corners_to_centres`, the solver's own output
map),
``S`` one symmetric Gauss-Seidel sweep (pyamg's) of the sample's system ``A x = b`` (the consistent right-hand side,
as the solver makes it) and ``c`` the constant that keeps the mean of ``u`` over tissue, so the sweeps move no
gauge. ``u_k`` is a Q1 field of the sample's own discretisation at every ``k``, and since Gauss-Seidel converges on
the semi-definite system (to ``x*`` plus a constant) ``u_k`` tends to the corpus's solution ``C x* + c`` from any
start. Keeping instead the part of ``u`` the corners do not carry (``u - C x_0``) was measured worse on the test
limbs (FNO + 32 sweeps: 0.0079 against 0.0062, five limbs) and leaves an exact solution off its own limit.

Started from the coarse-FEM prior instead of a trained operator the same sweeps are a classical two-grid method
(coarse solve, then fine smoothing): the honest baseline of the refined operator at equal cost, which the evaluation
scores beside it (:func:`refine_prior`).

At a finer grid than the operator was trained on (2x) the sweeps run on the sample restricted to the training grid
(:func:`~fieldlab.potential.physics.fem.coarse.restrict`: air-aware tensor mean, current summed cell by cell), started
from the operator's prediction there (``predict_coarse``), and the swept corner field is evaluated exactly at the
fine voxel centres as a Q1 field (:func:`~fieldlab.potential.physics.fem.transfer.prolong`, as the coarse_fem prior is).
Assembling the 2x system itself would cost more than the base-grid solve it has to beat (about 3 s against 2 s on
2 cores).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fieldlab.errors import InputError
from fieldlab.potential.models.wrapper import restrict_field
from fieldlab.potential.physics.fem.coarse import CoarseProblem, restrict
from fieldlab.potential.physics.fem.solver import System, build_system
from fieldlab.potential.physics.fem.transfer import centres_to_corners, corners_to_centres, prolong
from fieldlab.potential.schema import PotentialSample, refinement


def sweep_corners(
    u: np.ndarray, sigma: np.ndarray, source: np.ndarray, spacing: tuple[float, float, float], sweeps: int
) -> tuple[np.ndarray, System]:
    """``x_k`` of the module notes: ``(corner values over system.nodes, the sample's system)`` after ``sweeps``
    symmetric Gauss-Seidel sweeps started from ``P u`` (the system:
    :func:`~fieldlab.potential.physics.fem.solver.build_system`).

    Raises
    ------
    InputError
        ``sweeps < 0``, ``u`` not of the grid's shape or not finite in tissue, or the sample fails the solver's checks.
    """
    if sweeps < 0:
        raise InputError(f"eval.refine_sweeps = {sweeps}: expected a non-negative number of sweeps")
    u = np.asarray(u, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    source = np.asarray(source, dtype=np.float64)
    system = build_system(sigma, source, spacing)
    tissue = system.mask
    if u.shape != tissue.shape:
        raise InputError(f"u has shape {u.shape}; expected the sample's grid {tissue.shape} (D, H, W)")
    if not np.all(np.isfinite(u[tissue])):
        raise InputError("u holds non-finite values in tissue")
    from pyamg.relaxation.relaxation import gauss_seidel

    x = centres_to_corners(u, system.nodes, tissue)
    if sweeps:
        gauss_seidel(system.A, x, system.b, iterations=int(sweeps), sweep="symmetric")
    return x, system


def smooth_potential(
    u: np.ndarray, sigma: np.ndarray, source: np.ndarray, spacing: tuple[float, float, float], sweeps: int
) -> np.ndarray:
    """``u`` (D, H, W) volts at voxel centres after ``sweeps`` symmetric Gauss-Seidel sweeps of the Q1 system of
    ``sigma`` (D, H, W, 6) S/m and ``source`` (D, H, W) A/m^3 on voxels of ``spacing``: ``C x_k + c`` (module notes).

    Values of ``u`` in air are returned unchanged; in tissue the mean of ``u`` is kept. ``sweeps = 0`` returns ``u``.

    Raises
    ------
    InputError
        As :func:`sweep_corners`.

    Examples
    --------
    >>> from fieldlab.potential.physics.fem.solver import solve_potential
    >>> sigma = np.zeros((6, 6, 6, 6)); sigma[..., :3] = 1.0
    >>> f = np.zeros((6, 6, 6)); f[1, 1, 1], f[4, 4, 4] = 1.0, -1.0
    >>> u, _ = solve_potential(sigma, f, (1.0, 1.0, 1.0), 1e-10)
    >>> v = smooth_potential(np.zeros_like(u), sigma, f, (1.0, 1.0, 1.0), 50)
    >>> bool(np.linalg.norm(v - u) < 0.05 * np.linalg.norm(u))  # from zero towards the solution
    True
    """
    x, system = sweep_corners(u, sigma, source, spacing, sweeps)
    tissue = system.mask
    out = np.array(u, dtype=np.float64)
    if sweeps == 0:
        return out
    out[tissue] = corners_to_centres(x, system.nodes, tissue)[tissue]
    out[tissue] += np.mean(u[tissue]) - out[tissue].mean()
    return out


def prolong_swept(
    u: np.ndarray,
    problem: CoarseProblem,
    sweeps: int,
    fine_mask: np.ndarray,
) -> np.ndarray:
    """``u`` on the grid of ``problem`` (a sample restricted to the training grid) after ``sweeps`` sweeps of the
    restricted system, its Q1 field evaluated exactly at the fine voxel centres of ``fine_mask``
    (:func:`~fieldlab.potential.physics.fem.transfer.prolong`, as the coarse_fem prior): ``(D, H, W)`` volts in the
    corpus gauge, zero in air."""
    x, system = sweep_corners(u, problem.sigma, problem.source, problem.grid.spacing, sweeps)
    phi, active = system.corners(x)
    return prolong(phi, active, problem.grid.factor, fine_mask)


def restricted_problem(sample: PotentialSample, grid: tuple[int, int, int]) -> CoarseProblem:
    """``sample`` restricted to ``grid`` (D, H, W), the operator's training grid, for the sweeps at 2x.

    The restriction is :func:`~fieldlab.potential.physics.fem.coarse.restrict` with the spacing of one ``grid`` cell;
    ``grid`` must divide the sample's grid by one whole factor on every axis
    (:func:`~fieldlab.potential.schema.refinement`).
    """
    shape = tuple(int(n) for n in sample.shape)
    factor = refinement(shape, grid)
    if factor is None or len(set(factor)) != 1:
        raise InputError(
            f"sample grid {'x'.join(map(str, shape))} is not one whole multiple of the training grid "
            f"{'x'.join(map(str, grid))} on every axis; expected an isotropic refinement (e.g. 2x)"
        )
    spacing = tuple(float(s) for s in sample.spacing)
    h = spacing[2] * shape[0] / grid[0]  # a training-grid cell along D (z), in metres
    return restrict(sample.sigma, sample.source, sample.mask, spacing, h)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Refiner:
    """The sweeps of one sample, on potentials in model units (``unscale``/``scale`` convert to volts and back).

    Called on a ``(1, 1, D', H', W')`` tensor on the refiner's grid it returns the refined ``(1, 1, D, H, W)``
    tensor on the sample's grid: the same grid (:func:`smooth_potential`) or, for a sample finer than the training
    grid, the swept restricted field prolonged as a Q1 field (:func:`prolong_swept`).
    """

    sample: PotentialSample
    sweeps: int
    unscale: Callable[[torch.Tensor], torch.Tensor]
    scale: Callable[[torch.Tensor], torch.Tensor]
    problem: CoarseProblem | None = None

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        volts = self.unscale(phi.detach().float())[0, 0].cpu().numpy().astype(np.float64)
        s = self.sample
        if self.problem is None:
            spacing = tuple(float(v) for v in s.spacing)
            out = smooth_potential(volts, s.sigma, s.source, spacing, self.sweeps)  # type: ignore[arg-type]
        else:
            out = prolong_swept(volts, self.problem, self.sweeps, np.asarray(s.mask, dtype=bool))
        return self.scale(torch.from_numpy(out).to(phi.device, torch.float32))[None, None].to(phi.dtype)

    @classmethod
    def for_sample(
        cls,
        sample: PotentialSample,
        sweeps: int,
        unscale: Callable[[torch.Tensor], torch.Tensor],
        scale: Callable[[torch.Tensor], torch.Tensor],
        grid: tuple[int, int, int] | None = None,
    ) -> Refiner:
        """The refiner of ``sample`` on its own grid, or from ``grid`` (the training grid) when that differs."""
        if grid is None or tuple(grid) == tuple(sample.shape):
            return cls(sample, sweeps, unscale, scale)
        return cls(sample, sweeps, unscale, scale, restricted_problem(sample, grid))


def refine_prior(prior: torch.Tensor, refiner: Refiner, grid: tuple[int, int, int] | None = None) -> torch.Tensor:
    """The classical two-grid counterpart: the prior (a coarse solve) after the same sweeps (module notes); with
    ``grid`` the sweeps start from the prior's cell-mean restriction to ``grid``, as the operator's do."""
    if grid is None or tuple(grid) == tuple(prior.shape[-3:]):
        return refiner(prior)
    return refiner(restrict_field(prior, grid))


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    """``fn()`` and its wall time in seconds."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
