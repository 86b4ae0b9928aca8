"""The hybrid's last step: a few sweeps of the sample's own finite-element system, started from a prediction.

A trained operator's error is broadband; the sample's Q1 system (:mod:`fieldlab.potential.physics.solver`) knows
the exact discrete problem, and a symmetric Gauss-Seidel sweep damps the high-frequency part of any error at the
cost of one pass over the matrix. The refinement of a centre field ``u`` is

    x_0 = P u,   x_k = S^k(x_0; A, b),   u_k = u + C (x_k - x_0) + c,

with ``P`` the centre-to-corner transfer (:func:`~fieldlab.potential.estimate.centres_to_corners`), ``C`` the
corner-to-centre mean (:func:`~fieldlab.potential.physics.solver.corners_to_centres`), ``S`` one symmetric
Gauss-Seidel sweep (pyamg's) of the sample's system ``A x = b`` (the consistent right-hand side, as the solver makes
it) and ``c`` the constant that keeps the mean of ``u`` over tissue, so the sweeps move no gauge. Since the exact
corner solution ``x*`` is a fixed point of ``S``, ``u_k -> C x* + (u - C x_0) + c``: the part of ``u`` the corners do
not carry stays as it was, and the rest converges to the discrete solution.

Started from the coarse-FEM prior instead of a trained operator the same sweeps are a classical two-grid method
(coarse solve, then fine smoothing): the honest baseline of the refined operator at equal cost, which the evaluation
scores beside it (:func:`refine_prior`).

At a finer grid than the operator was trained on (2x) the sweeps run on the sample restricted to the training grid
(:func:`~fieldlab.potential.physics.coarse.restrict`: air-aware tensor mean, current summed cell by cell), where the
operator predicts through ``predict_restricted``; the correction is prolonged as the operator's is. Assembling the
2x system itself costs more than the base-grid solve it would have to beat (about 3 s against 2 s on 2 cores).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fieldlab.errors import InputError
from fieldlab.potential.estimate import centres_to_corners
from fieldlab.potential.physics.coarse import CoarseProblem, restrict
from fieldlab.potential.physics.solver import assemble, check_inputs, corners_to_centres, load_vector
from fieldlab.potential.schema import PotentialSample


def smooth_potential(
    u: np.ndarray, sigma: np.ndarray, source: np.ndarray, spacing: tuple[float, float, float], sweeps: int
) -> np.ndarray:
    """``u`` (D, H, W) volts at voxel centres after ``sweeps`` symmetric Gauss-Seidel sweeps of the Q1 system of
    ``sigma`` (D, H, W, 6) S/m and ``source`` (D, H, W) A/m^3 on voxels of ``spacing`` (module notes).

    Values of ``u`` in air are returned unchanged; in tissue the mean of ``u`` is kept.

    Raises
    ------
    InputError
        ``sweeps < 0``, ``u`` not of the grid's shape or not finite in tissue, or the sample fails the solver's checks.

    Examples
    --------
    >>> from fieldlab.potential.physics.solver import solve_potential
    >>> sigma = np.zeros((6, 6, 6, 6)); sigma[..., :3] = 1.0
    >>> f = np.zeros((6, 6, 6)); f[1, 1, 1], f[4, 4, 4] = 1.0, -1.0
    >>> u, _ = solve_potential(sigma, f, (1.0, 1.0, 1.0), 1e-10)
    >>> v = smooth_potential(np.zeros_like(u), sigma, f, (1.0, 1.0, 1.0), 50)
    >>> bool(np.linalg.norm(v - u) < 0.05 * np.linalg.norm(u))  # from zero towards the solution
    True
    """
    if sweeps < 0:
        raise InputError(f"eval.refine_sweeps = {sweeps}: expected a non-negative number of sweeps")
    u = np.asarray(u, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    source = np.asarray(source, dtype=np.float64)
    tissue = check_inputs(sigma, source, spacing)
    if u.shape != tissue.shape:
        raise InputError(f"u has shape {u.shape}; expected the sample's grid {tissue.shape} (D, H, W)")
    if not np.all(np.isfinite(u[tissue])):
        raise InputError("u holds non-finite values in tissue")
    if sweeps == 0:
        return u.copy()
    from pyamg.relaxation.relaxation import gauss_seidel

    A, nodes = assemble(sigma, tissue, spacing)
    b = load_vector(source, tissue, nodes, spacing)
    b -= b.sum() / b.size  # the consistent right-hand side of the Neumann system, as the solver makes it
    x0 = centres_to_corners(u, nodes, tissue)
    x = x0.copy()
    gauss_seidel(A, x, b, iterations=int(sweeps), sweep="symmetric")
    out = u.copy()
    out[tissue] += corners_to_centres(x - x0, nodes, tissue)[tissue]
    out[tissue] += u[tissue].mean() - out[tissue].mean()
    return out


def restricted_problem(sample: PotentialSample, grid: tuple[int, int, int]) -> CoarseProblem:
    """``sample`` restricted to ``grid`` (D, H, W), the operator's training grid, for the sweeps at 2x.

    The restriction is :func:`~fieldlab.potential.physics.coarse.restrict` with the spacing of one ``grid`` cell;
    ``grid`` must divide the sample's grid by one whole factor on every axis.
    """
    shape = tuple(int(n) for n in sample.shape)
    factors = {s / g for s, g in zip(shape, grid, strict=True)}
    if len(factors) != 1 or any(s % g for s, g in zip(shape, grid, strict=True)):
        raise InputError(
            f"sample grid {'x'.join(map(str, shape))} is not one whole multiple of the training grid "
            f"{'x'.join(map(str, grid))} on every axis; expected an isotropic refinement (e.g. 2x)"
        )
    spacing = tuple(float(s) for s in sample.spacing)
    h = spacing[2] * shape[0] / grid[0]  # a training-grid cell along D (z), in metres
    return restrict(sample.sigma, sample.source, sample.mask, spacing, h)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Refiner:
    """Sweeps of one sample's system on a scaled potential tensor, as the model's outputs are.

    ``unscale``/``scale`` convert model units to volts and back; :meth:`__call__` maps a ``(1, 1, D, H, W)`` tensor
    of model units on the grid of ``sigma``/``source`` to the refined tensor (same dtype and device).
    """

    sigma: np.ndarray
    source: np.ndarray
    spacing: tuple[float, float, float]
    sweeps: int
    unscale: Callable[[torch.Tensor], torch.Tensor]
    scale: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, phi: torch.Tensor) -> torch.Tensor:
        volts = self.unscale(phi.detach().float())[0, 0].cpu().numpy()
        out = smooth_potential(volts, self.sigma, self.source, self.spacing, self.sweeps)
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
        """The refiner of ``sample`` on its own grid, or restricted to ``grid`` (the training grid) when given."""
        if grid is None or tuple(grid) == tuple(sample.shape):
            spacing = tuple(float(s) for s in sample.spacing)
            return cls(sample.sigma, sample.source, spacing, sweeps, unscale, scale)  # type: ignore[arg-type]
        p = restricted_problem(sample, grid)
        return cls(p.sigma, p.source, p.grid.spacing, sweeps, unscale, scale)


def refine_prior(prior: torch.Tensor, refiner: Refiner, grid: tuple[int, int, int] | None = None) -> torch.Tensor:
    """The classical two-grid counterpart: the prior (a coarse solve) after the same sweeps (module notes).

    With ``grid`` the sweeps run on the restricted prior and the correction is prolonged trilinearly, exactly as
    ``predict_restricted`` treats the operator's correction.
    """
    if grid is None or tuple(grid) == tuple(prior.shape[-3:]):
        return refiner(prior)
    coarse = F.adaptive_avg_pool3d(prior, grid)
    correction = refiner(coarse) - coarse
    return prior + F.interpolate(correction, size=tuple(prior.shape[-3:]), mode="trilinear", align_corners=False)


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    """``fn()`` and its wall time in seconds."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
