"""A sample's Q1 solve on stencils, nested iteration from a restricted sample, and stencil levels of a sparse matrix.

:func:`solve_sample` is what :func:`~.solver.solve_potential` runs for ``method="mf"`` (multigrid-CG from zero) and
``"fmg"`` (from full multigrid): the solver's checks (:func:`~.solver.check_inputs`), then :func:`~.mfsolve.solve_grid`
(stencil, consistent load, Galerkin levels, CG) without a sparse matrix.

:func:`stopped_cg` is the same solve stopped after ``k`` iterations (from zero, from full multigrid, or from a
start): the classical rivals' curves and the classical routes of ``fieldlab predict``.

:func:`nested` is the classical rival of a predictor that starts from a coarse solve: the sample restricted to cells of
``h`` (:func:`~.coarse.restrict`, as the coarse prior and the hybrid restrict a 2x sample), solved there, its corner
values prolonged trilinearly to the fine corners, then ``k`` V-cycles or CG iterations on the sample's own Q1 system.
Every piece is timed from the sample's arrays: the restriction, the coarse solve (its checks, stencil, levels, CG), the
prolongation, the fine set-up (checks, stencil, load, levels), the fine steps, and the map of an iterate to voxel
centres.

:class:`PinnedMultilevel` is what :func:`~.solver.build_hierarchy` returns for ``"mf"`` / ``"fmg"``: the stencil
levels of an assembled pinned matrix with pyamg's ``solve``, for the callers that hold a sparse system (the
multi-source solve, the classical rivals, :func:`~.solver.pinned_cg`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from fieldlab.errors import InputError
from fieldlab.potential.physics.fem.coarse import restrict
from fieldlab.potential.physics.fem.mfsolve import Hierarchy, dot, pcg, pinned_system, solve_grid
from fieldlab.potential.physics.fem.solver import System, check_inputs, element_matrices
from fieldlab.potential.physics.fem.stencil import Layout, Stencil
from fieldlab.potential.physics.fem.stencil_mg import coarse_layout, prolong_add
from fieldlab.potential.physics.fem.transfer import corners_to_centres, gauge


def solve_sample(
    sigma: np.ndarray, source: np.ndarray, spacing: tuple[float, float, float], tol: float, maxiter: int, nested: bool
) -> tuple[np.ndarray, System, int, float]:
    """``(x, system, iterations, residual)`` of a sample by multigrid-CG on stencils (module notes): ``x`` the corner
    values over ``system.nodes`` (``x[0] = 0``, the pinned corner), ``system.A`` a LinearOperator, ``residual`` the
    true relative residual of the unpinned system."""
    spacing = tuple(float(v) for v in spacing)  # type: ignore[assignment]
    mask = check_inputs(sigma, source, spacing)
    run = solve_grid(
        np.asarray(sigma), np.asarray(source), mask, element_matrices(spacing), spacing, tol, maxiter, nested
    )
    return run.x, System(run.A, run.b, run.nodes, mask, spacing), run.iterations, run.residual  # type: ignore[arg-type]


def stopped_cg(
    sigma: np.ndarray,
    source: np.ndarray,
    spacing: tuple[float, float, float],
    iterations: int,
    *,
    full_multigrid: bool = False,
    start: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    record: Callable[[np.ndarray], None] | None = None,
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Multigrid-CG on stencils on a sample's own system stopped after ``iterations``: from zero, from full
    multigrid on the Galerkin levels (``full_multigrid``, the ``fmg`` solver stopped early), or from ``start(nodes,
    mask)``, corner values over the active corners. ``record(x)`` sees the start (with ``full_multigrid``) and each
    iterate. Returns the last iterate (packed) and the map of an iterate to the voxel centres (corpus gauge).

    Examples
    --------
    >>> sigma = np.zeros((8, 8, 8, 6)); sigma[..., :3] = 1.0
    >>> f = np.zeros((8, 8, 8)); f[2, 2, 2], f[5, 5, 5] = 1.0, -1.0
    >>> x, centres = stopped_cg(sigma, f, (1.0, 1.0, 1.0), 0, full_multigrid=True)
    >>> centres(x).shape
    (8, 8, 8)
    """
    spacing = tuple(float(v) for v in spacing)  # type: ignore[assignment]
    mask = check_inputs(sigma, source, spacing)
    op, b, nodes, packed, _, _ = pinned_system(sigma, source, mask, element_matrices(spacing), spacing)
    hierarchy = Hierarchy(op)
    x = hierarchy.nested(b) if full_multigrid else op.layout.zeros()
    if full_multigrid:
        x[packed[0]] = 0.0  # the pinned corner
        if record is not None:
            record(x)
    elif start is not None:
        corners = start(nodes, mask)
        x[packed] = corners - corners[0]  # the pinned corner at zero: a constant is no error (gauge)
    if iterations > 0:
        pcg(hierarchy, b, x, 0.0, iterations, None if record is None else (lambda v, _rnorm: record(v)))
    return x, lambda v: gauge(corners_to_centres(v[packed], nodes, mask), mask)


def prolong_corners(values: np.ndarray, nodes: np.ndarray, fine: Layout, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Corner values of a grid ``factor`` (a power of 2) times coarser, over its flat corner indices ``nodes``, at the
    active corners of ``fine`` (packed): the trilinear interpolant ``P v / P 1`` over the coarse corners that exist
    (``P 1 < 1`` next to a coarse corner without tissue); returns ``(x, defined)``, ``defined`` false (and ``x``
    zero) where no coarse corner with tissue is near."""
    steps = round(float(np.log2(factor)))
    if factor < 2 or 2**steps != factor:
        raise InputError(f"factor = {factor}; expected a power of 2 (fine cells per coarse cell along each axis)")
    layouts = [fine]
    for _ in range(steps):
        layouts.append(coarse_layout(layouts[-1]))
    at = layouts[-1].index(nodes)
    value, weight = layouts[-1].zeros(), layouts[-1].zeros()
    value[at], weight[at] = values, 1.0
    for coarse, finer in zip(layouts[:0:-1], layouts[-2::-1], strict=True):
        pv, pw = finer.zeros(), finer.zeros()
        prolong_add(coarse, value, finer, pv)
        prolong_add(coarse, weight, finer, pw)
        value, weight = pv, pw
    defined = weight > 1e-9
    out = np.where(defined, value / np.where(defined, weight, 1.0), 0.0)
    return out, defined


@dataclass(frozen=True)
class NestedRun:
    """Nested iteration on one sample (:func:`nested`).

    Attributes
    ----------
    steps
        Fine V-cycles or CG iterations of each field (0: the prolonged coarse solution itself).
    fields
        ``(D, H, W)`` potential at the voxel centres after each count of ``steps``, corpus gauge.
    seconds
        Wall time from the sample's arrays to each field: the pieces below, the fine steps up to that count, and
        one map to voxel centres.
    pieces
        ``restrict_s``, ``coarse_solve_s``, ``prolong_s``, ``fine_setup_s``, ``centres_s``, and ``step_s`` (the
        cumulative seconds of the fine steps at each count).
    """

    steps: tuple[int, ...]
    fields: list[np.ndarray]
    seconds: list[float]
    pieces: dict


def nested(
    sigma: np.ndarray,
    source: np.ndarray,
    spacing: tuple[float, float, float],
    h: float,
    steps: tuple[int, ...] = (0, 1, 2),
    accel: str = "cg",
    coarse_tol: float = 1e-5,
) -> NestedRun:
    """Nested iteration from the sample restricted to cells of ``h`` metres (module notes).

    Parameters
    ----------
    sigma, source, spacing
        The fine sample (as :func:`~.solver.solve_potential`).
    h
        Coarse cell in metres: a power-of-2 multiple of the fine spacing (:func:`~.coarse.restrict`).
    steps
        Counts of fine steps to report, each >= 0.
    accel
        ``"cg"``: CG iterations preconditioned by the V-cycle; ``"v"``: V-cycles ``x += B (b - A x)``.
    coarse_tol
        Relative residual of the coarse solve (multigrid-CG on stencils from full multigrid).

    Examples
    --------
    >>> sigma = np.zeros((16, 16, 16, 6)); sigma[..., :3] = 1.0
    >>> f = np.zeros((16, 16, 16)); f[4, 4, 4], f[11, 11, 11] = 1.0, -1.0
    >>> run = nested(sigma, f, (1.0, 1.0, 1.0), 2.0, steps=(0, 6))
    >>> from fieldlab.potential.physics.fem.solver import solve_potential
    >>> u, _ = solve_potential(sigma, f, (1.0, 1.0, 1.0), 1e-10)
    >>> [bool(np.linalg.norm(v - u) < 1e-3 * np.linalg.norm(u)) for v in run.fields]  # the coarse start is not enough
    [False, True]
    """
    if accel not in ("cg", "v") or not steps or min(steps) < 0:
        raise InputError(f"accel = {accel!r}, steps = {steps}; expected 'cg' or 'v' and step counts >= 0")
    sigma, source = np.asarray(sigma), np.asarray(source)
    spacing = tuple(float(v) for v in spacing)  # type: ignore[assignment]
    t0 = time.perf_counter()
    mask = check_inputs(sigma, source, spacing)
    problem = restrict(sigma, source, mask, spacing, h)  # type: ignore[arg-type]
    t1 = time.perf_counter()
    xc, coarse, _, _ = solve_sample(problem.sigma, problem.source, problem.grid.spacing, coarse_tol, 300, True)
    t2 = time.perf_counter()
    op, b, nodes, packed, _, _ = pinned_system(sigma, source, mask, element_matrices(spacing), spacing)
    hierarchy = Hierarchy(op)
    t3 = time.perf_counter()
    factor = set(problem.grid.factor)
    if len(factor) != 1:
        raise InputError(f"coarse grid factor {problem.grid.factor}; expected the same factor along every axis")
    x, defined = prolong_corners(xc, coarse.nodes, op.layout, factor.pop())
    x[~defined & (op.S[0] > 0)] = x[defined].mean() if defined.any() else 0.0
    x -= x[packed[0]]  # the pinned corner at zero: a constant, no error of the potential
    t4 = time.perf_counter()
    iterates, clock = _fine_steps(hierarchy, b, x, max(steps), accel)
    t5 = time.perf_counter()
    fields = [gauge(corners_to_centres(iterates[0][packed], nodes, mask), mask)]
    centres = time.perf_counter() - t5
    fields = [fields[0] if k == 0 else gauge(corners_to_centres(iterates[k][packed], nodes, mask), mask) for k in steps]
    pieces = {
        "restrict_s": t1 - t0,
        "coarse_solve_s": t2 - t1,
        "fine_setup_s": t3 - t2,
        "prolong_s": t4 - t3,
        "centres_s": centres,
        "step_s": [clock[k] for k in steps],
    }
    base = t4 - t0 + centres
    return NestedRun(tuple(steps), fields, [base + clock[k] for k in steps], pieces)


def _fine_steps(h: Hierarchy, b: np.ndarray, x: np.ndarray, n: int, accel: str) -> tuple[list, list]:
    """The iterate after 0 .. ``n`` fine steps and the cumulative seconds at each, less the copies' time."""
    iterates, clock = [x.copy()], [0.0]
    spent = 0.0
    t0 = time.perf_counter()

    def record(v: np.ndarray, _rnorm: float = 0.0) -> None:
        nonlocal spent
        t = time.perf_counter()
        clock.append(t - t0 - spent)
        iterates.append(v.copy())
        spent += time.perf_counter() - t

    if accel == "cg" and n > 0:
        pcg(h, b, x, 0.0, n, record)
    elif accel == "v":
        op, r, z = h.ops[0], h.ops[0].layout.zeros(), h.ops[0].layout.zeros()
        for _ in range(n):
            op.residual(b, x, r)
            h.cycle(r, z)
            x += z
            record(x)
    while len(iterates) <= n:  # an exact solve stops early: later counts repeat it
        iterates.append(iterates[-1])
        clock.append(clock[-1])
    return iterates, clock


@numba.njit(cache=True)
def _scatter_csr(indptr, indices, data, rows, coords, S):  # pragma: no cover - compiled
    """``S[q][rows[r]] = A[r, c]`` for the centre and positive offsets ``o_q = coords[c] - coords[r]``."""
    for r in range(indptr.size - 1):
        for e in range(indptr[r], indptr[r + 1]):
            c = indices[e]
            oz, oy, ox = coords[c, 0] - coords[r, 0], coords[c, 1] - coords[r, 1], coords[c, 2] - coords[r, 2]
            idx = 9 * (oz + 1) + 3 * (oy + 1) + (ox + 1)
            if idx >= 13:
                S[idx - 13, rows[r]] = data[e]


class PinnedMultilevel:
    """The stencil hierarchy of a pinned sparse matrix ``Ar = A[1:, 1:]`` with pyamg's ``solve`` (the shape
    :func:`~.solver.build_hierarchy` returns), so every caller of a hierarchy can use it.

    ``nodes`` and ``corners`` are the voxel grid of ``A`` (:attr:`~.solver.System.grid`); with ``nested`` a solve
    without ``x0`` starts from nested iteration instead of zero.
    """

    def __init__(self, Ar: sp.csr_matrix, nodes: np.ndarray, corners: tuple[int, int, int], nested: bool = False):
        self._build(Ar, nodes, corners)
        self.levels = self.hierarchy.levels
        self.nested = nested

    def _build(self, Ar: sp.csr_matrix, nodes: np.ndarray, corners: tuple[int, int, int]) -> None:
        layout = Layout.from_nodes(nodes, corners)
        coords = np.stack(np.unravel_index(np.asarray(nodes[1:]), corners), axis=1)
        self.packed = layout.index(nodes[1:])
        S = np.zeros((14, layout.size))
        A = sp.csr_matrix(Ar)
        _scatter_csr(A.indptr.astype(np.int64), A.indices.astype(np.int64), A.data, self.packed, coords, S)
        self.hierarchy = Hierarchy(Stencil(S, layout))

    def solve(
        self,
        b: np.ndarray,
        x0: np.ndarray | None = None,
        tol: float = 1e-5,
        maxiter: int = 100,
        accel: str | None = "cg",
        residuals: list | None = None,
        callback: Callable[[np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """pyamg's ``MultilevelSolver.solve`` for the pinned system: CG (``accel="cg"``) or V-cycles (``None``) to
        ``||b - Ar x|| < tol ||b||``; ``residuals`` receives ``||r||`` from the start, ``callback`` each iterate."""
        return self._solve(b, x0, tol, maxiter, accel, residuals, callback)

    def _solve(self, b, x0, tol, maxiter, accel, residuals, callback) -> np.ndarray:
        h, L = self.hierarchy, self.hierarchy.ops[0].layout
        bg, x = L.zeros(), L.zeros()
        bg[self.packed] = b
        if x0 is not None:
            x[self.packed] = x0
        elif self.nested:
            x = h.nested(bg)
        r = L.zeros()
        norm = math.sqrt(h.ops[0].residual(bg, x, r))
        if residuals is not None:
            residuals[:] = [norm]

        def record(v: np.ndarray, rnorm: float) -> None:
            if residuals is not None:
                residuals.append(rnorm)
            if callback is not None:
                callback(v[self.packed])

        if accel == "cg":
            pcg(h, bg, x, tol, maxiter, record)
        elif accel is None:
            z, target = L.zeros(), tol * math.sqrt(dot(bg, bg))
            for _ in range(maxiter):
                if norm <= target:
                    break
                h.cycle(r, z)
                x += z
                norm = math.sqrt(h.ops[0].residual(bg, x, r))
                record(x, norm)
        else:
            raise ValueError(f"accel = {accel!r}; expected 'cg' or None")
        return x[self.packed]
