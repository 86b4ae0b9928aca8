"""A true two-grid cycle on the sample's own Q1 system: smoothing on the fine grid, an exact coarse-grid correction.

One cycle on ``A x = b`` (the sample's Neumann system over its active corners, the consistent right-hand side as
the solver makes it) is

    x <- S^nu(x),   x <- x + P A_c^+ P^T (b - A x),   x <- S^nu(x),

with ``S`` one symmetric Gauss-Seidel sweep (pyamg's, as :mod:`~fieldlab.potential.prediction.sweeps`), ``P`` the
trilinear interpolation from the corners of a coarse grid (cells of ``r = (r_d, r_h, r_w)`` voxels, e.g. 4 mm:
``r = 2`` on the 2 mm base grid, ``r = 4`` on the 1 mm grid) to the fine active corners, and ``A_c = P^T A P`` the
Galerkin coarse operator. Along one axis a fine corner ``i`` lies on coarse edge ``j = i // r`` at
``s = (i mod r) / r`` and takes ``1 - s`` of coarse corner ``j`` and ``s`` of corner ``j + 1``; the 3D weights are
the products (:func:`~fieldlab.potential.physics.fem.multigrid.trilinear_prolongator`, the geometric multigrid's at
``r = 2``; ``r = 4`` is two of those composed). The coarse unknowns are the coarse corners with a non-zero weight at
an active fine corner, so every row of ``P`` sums to one and constants (the null space) are prolonged exactly.

``A`` and ``A_c`` are singular (constants). The residual ``b - A x`` sums to zero (``1^T A = 0``, ``1^T b = 0``)
and so does ``P^T`` of it (``P 1 = 1``): the coarse system is consistent. It is pinned at its first unknown (row
and column dropped, as :func:`~fieldlab.potential.physics.fem.solver.pinned_cg` pins the fine system) and solved to a
relative residual of :data:`COARSE_RTOL` by CG preconditioned with the geometric multigrid of ``A_c`` itself
(:func:`~fieldlab.potential.physics.fem.multigrid.geometric_hierarchy`, built at set-up): exact for the cycle, whose
contraction is some 1e-1, at a few V-cycles of the small grid. (A sparse LU of the pinned ``A_c`` is not the cheaper
exact solve: on the 4 mm grid of a base limb, 11.7k unknowns, SuperLU fills to 9-20M entries in 1.5-12 s, longer than
the whole multigrid-CG rival.) A constant added to the correction is no error (the gauge is fixed at the end: zero
mean over tissue, as the corpus).

With the correction exact the cycle's error propagator is ``E = S^nu (I - P A_c^+ P^T A) S^nu``, a symmetric
contraction in the energy norm whose factor does not grow with the grid for a fixed coarsening ratio (Hackbusch,
*Multi-Grid Methods and Applications*, 1985, ch. 6; Trottenberg, Oosterlee, Schueller, *Multigrid*, 2001, sec. 2.5):
what the tests check and the rival's points show.

:func:`twogrid_curve` times it as :func:`~fieldlab.potential.evaluation.classical.cg.cg_curve` times multigrid-CG: from
the sample's arrays (input checks, assembly, ``P``, ``A_c`` and its multigrid set-up, load vector, the start vector,
the cycles and the map to voxel centres), each iterate recorded as multigrid-CG's
(:mod:`~fieldlab.potential.evaluation.classical.curve`).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from fieldlab.errors import ConfigError, InputError
from fieldlab.potential.evaluation.classical.curve import (
    Curve,
    Recorder,
    sample_system,
    start_corners,
    step_counts,
    timed_curve,
)
from fieldlab.potential.physics.fem.assembly import pin_first
from fieldlab.potential.physics.fem.coarse import coarse_grid
from fieldlab.potential.physics.fem.multigrid import geometric_hierarchy, trilinear_prolongator
from fieldlab.potential.schema import PotentialSample

#: Relative residual to which each coarse-grid problem is solved (module notes).
COARSE_RTOL = 1e-10
#: CG iterations allowed to a coarse solve (the coarse multigrid needs some 10 for :data:`COARSE_RTOL`).
COARSE_MAXITER = 100


class TwoGrid:
    """The two-grid cycle of one assembled system (module notes): ``P``, the Galerkin ``A_c`` and the multigrid
    hierarchy of the pinned ``A_c`` (its exact solver).

    Parameters
    ----------
    A
        The fine Q1 matrix over ``nodes`` (CSR, symmetric, constants in its null space).
    nodes
        Flat indices (increasing) of its unknowns in the corner grid of ``shape``.
    shape
        Fine corners per axis.
    factor
        Fine cells per coarse cell along each axis; ``N_i - 1`` cells must be a multiple of ``factor[i]``.
    smoothing
        ``nu``: symmetric Gauss-Seidel sweeps before and after the coarse correction (each >= 0).
    """

    def __init__(
        self,
        A: sp.csr_matrix,
        nodes: np.ndarray,
        shape: tuple[int, int, int],
        factor: tuple[int, int, int],
        smoothing: int = 1,
    ) -> None:
        if smoothing < 0:
            raise InputError(f"eval.twogrid_smoothing = {smoothing}: expected sweeps >= 0")
        if any(int(r) < 1 or (int(n) - 1) % int(r) for n, r in zip(shape, factor, strict=True)):
            raise InputError(f"corner grid {shape} with coarsening {factor}: expected cells a whole multiple per axis")
        self.A = A.tocsr()
        self.smoothing = int(smoothing)
        self.P, self.coarse, self.coarse_shape = trilinear_prolongator(nodes, shape, factor)
        self.R = self.P.T.tocsr()
        Ac = (self.R @ (self.A @ self.P)).tocsr()
        Ac.sort_indices()
        self.Ac = Ac
        self.Acr = pin_first(Ac)
        self.coarse_ml = geometric_hierarchy(self.Acr, self.coarse, self.coarse_shape)

    def coarse_correction(self, r: np.ndarray) -> np.ndarray:
        """``P e_c`` with ``A_c e_c = P^T r`` solved to :data:`COARSE_RTOL` (first coarse unknown pinned at zero)."""
        rc = self.R @ r
        ec = np.zeros(rc.size)
        if rc.size > 1 and np.any(rc[1:]):
            ec[1:] = self.coarse_ml.solve(rc[1:], tol=COARSE_RTOL, maxiter=COARSE_MAXITER, accel="cg")
        return self.P @ ec

    def cycle(self, x: np.ndarray, b: np.ndarray) -> np.ndarray:
        """One cycle on ``A x = b``, in place on ``x`` (float64, contiguous); returns ``x``."""
        from pyamg.relaxation.relaxation import gauss_seidel

        if self.smoothing:
            gauss_seidel(self.A, x, b, iterations=self.smoothing, sweep="symmetric")
        x += self.coarse_correction(b - self.A @ x)
        if self.smoothing:
            gauss_seidel(self.A, x, b, iterations=self.smoothing, sweep="symmetric")
        return x


def twogrid_name(coarse_spacing_m: float, warm: bool, cycles: int) -> str:
    """``twogrid_<N>mm[_warm]_v<c>``: a key of ``eval_sr.json: baselines``.

    Examples
    --------
    >>> twogrid_name(0.004, False, 2), twogrid_name(0.004, True, 8)
    ('twogrid_4mm_v2', 'twogrid_4mm_warm_v8')
    """
    return f"twogrid_{coarse_spacing_m * 1e3:g}mm{'_warm' if warm else ''}_v{cycles}"


def twogrid_factor(sample: PotentialSample, coarse_spacing_m: float) -> tuple[int, int, int] | None:
    """Fine voxels per coarse cell of ``coarse_spacing_m`` on ``sample``'s grid, or ``None`` where that spacing does
    not tile the grid (:func:`~fieldlab.potential.physics.fem.coarse.coarse_grid`) or is no coarser than the voxels.

    Examples
    --------
    >>> z = np.zeros((16, 8, 8))
    >>> s = PotentialSample(np.zeros((16, 8, 8, 6)), z, z == 0, z.astype(np.uint8), z, (1e-3, 1e-3, 1e-3),
    ...                     np.zeros((2, 3)), np.zeros((2, 3), dtype=np.int64))
    >>> twogrid_factor(s, 2e-3), twogrid_factor(s, 3e-3), twogrid_factor(s, 1e-3)
    ((2, 2, 2), None, None)
    """
    spacing = tuple(float(v) for v in sample.spacing)
    try:
        grid = coarse_grid(tuple(int(n) for n in sample.shape), spacing, coarse_spacing_m)  # type: ignore[arg-type]
    except ConfigError:
        return None
    return grid.factor if max(grid.factor) > 1 else None


def twogrid_curve(
    sample: PotentialSample,
    cycles: tuple[int, ...],
    factor: tuple[int, int, int],
    smoothing: int = 1,
    start: np.ndarray | None = None,
) -> Curve:
    """The two-grid rival's curve on ``sample``: its potential after each count of ``cycles`` (module notes).

    Parameters
    ----------
    sample
        The sample (its sigma, source, spacing; ``u`` is never read).
    cycles
        Cycle counts, each >= 1.
    factor
        Fine voxels per coarse cell along (D, H, W) (:func:`twogrid_factor`).
    smoothing
        Symmetric Gauss-Seidel sweeps before and after each coarse correction.
    start
        ``(D, H, W)`` potential at voxel centres to start from (moved to the corners by
        :func:`~fieldlab.potential.physics.fem.transfer.centres_to_corners`, timed), or ``None`` for zero.

    Raises
    ------
    InputError
        A cycle count below 1, a start of another shape or not finite in tissue, a grid ``factor`` does not divide,
        or a sample that fails the solver's checks.

    Examples
    --------
    >>> from fieldlab.potential.physics.fem.solver import solve_potential
    >>> sigma = np.zeros((8, 8, 8, 6)); sigma[..., :3] = 1.0
    >>> f = np.zeros((8, 8, 8)); f[2, 2, 2], f[5, 5, 5] = 1.0, -1.0
    >>> z = np.zeros((8, 8, 8))
    >>> s = PotentialSample(sigma, f, z == 0, z.astype(np.uint8), z, (1.0, 1.0, 1.0), np.zeros((2, 3)),
    ...                     np.zeros((2, 3), dtype=np.int64))
    >>> u, _ = solve_potential(sigma, f, (1.0, 1.0, 1.0), 1e-12)
    >>> c = twogrid_curve(s, (1, 12), (2, 2, 2))
    >>> [bool(np.linalg.norm(v - u) < 1e-6 * np.linalg.norm(u)) for v in c.fields]  # 1 cycle is not enough
    [False, True]
    """
    counts = step_counts(cycles, "eval.twogrid_cycles", "cycle")
    t0 = time.perf_counter()
    system = sample_system(sample)
    tg = TwoGrid(system.A, system.nodes, system.corner_shape, factor, smoothing)
    x = np.zeros(system.b.size) if start is None else start_corners(start, system.nodes, system.mask)
    recorder = Recorder()
    for _ in range(max(counts)):
        recorder(tg.cycle(x, system.b))
    return timed_curve(counts, recorder, system.centres, t0)


def convergence_factor(tg: TwoGrid, cycles: int = 12, seed: int = 0) -> float:
    """The asymptotic energy-norm convergence factor per cycle of ``tg``: cycles on ``A e = 0`` from a random ``e``
    (every frequency present), the geometric mean of the last half of the per-cycle ratios ``|e_k|_A / |e_{k-1}|_A``
    (the energy norm ignores constants, the gauge; the error is rescaled to unit energy and its mean removed before
    every cycle, which changes no ratio). 0 when the error vanishes.

    Examples
    --------
    >>> from fieldlab.potential.physics.fem.solver import assemble
    >>> sigma = np.zeros((8, 8, 8, 6)); sigma[..., :3] = 1.0
    >>> A, nodes = assemble(sigma, np.ones((8, 8, 8), dtype=bool), (1.0, 1.0, 1.0))
    >>> rho = convergence_factor(TwoGrid(A, nodes, (9, 9, 9), (2, 2, 2)))
    >>> 0 < rho < 0.5
    True
    """
    e = np.random.default_rng(seed).standard_normal(tg.A.shape[0])
    zero = np.zeros_like(e)
    ratios = []
    for _ in range(cycles):
        e -= e.mean()  # the cycle commutes with adding a constant: drop it, or A e loses its digits to round-off
        before = float(np.sqrt(e @ (tg.A @ e)))
        if before == 0.0:
            return 0.0
        e /= before  # unit energy before every cycle: no underflow however fast the cycle converges
        tg.cycle(e, zero)
        e -= e.mean()
        ratios.append(float(np.sqrt(max(e @ (tg.A @ e), 0.0))))
    late = np.array(ratios[len(ratios) // 2 :])
    return 0.0 if np.any(late == 0.0) else float(np.exp(np.mean(np.log(late))))
