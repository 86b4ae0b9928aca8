"""Matrix-free geometric multigrid-CG of the Q1 system on packed stencils: hierarchy, V-cycle, nested iteration, solve.

Hierarchy (:class:`Hierarchy`)
------------------------------
The fine operator is the pinned Q1 stencil (:mod:`~.stencil`; corner ``nodes[0]`` pinned as
:func:`~.solver.pinned_cg` pins it: its row and column zeroed, so the system is positive definite and the Neumann
null space is gone). Coarse levels are Galerkin stencils ``A_{l+1} = P^T A_l P`` (:func:`~.stencil_mg.galerkin`),
added while a level has more than :data:`MAX_COARSE` active corners and coarsening removes at least 10 % of them,
the rule of :func:`~.multigrid.geometric_hierarchy`, so the levels are the same matrices. The coarsest level is
factorised once (:class:`~.multigrid.CoarseSolve`, SuperLU).

V-cycle (:meth:`Hierarchy.cycle`): from zero, eight-colour Gauss-Seidel sweeps (:data:`SWEEPS`: forward,
backward, ...), the residual restricted (``P^T``), the coarse level's cycle, its correction prolonged (``P``), the
same sweeps in reverse order and direction; symmetric, so it preconditions CG. It runs in the hierarchy's ``dtype``:
float32 by default (half the memory traffic of the sweeps and of the cycle's own residuals), with float64 stencils
kept for CG. Everything that decides the answer is float64: CG's operator products, its residuals and inner
products, the true residual that is checked against ``tol`` (tests: float32 and float64 cycles need the same CG
iterations and give the same potential to 1e-9; bench/solver.py: the same errors at every iteration).

Threads: every kernel runs on contiguous blocks of planes on :func:`~.stencil.kernel_threads` threads (one below
:data:`~.stencil.PARALLEL_MIN` values), :func:`~.stencil.split`.

Nested iteration (:meth:`Hierarchy.nested`, full multigrid): ``b`` restricted to every level, the coarsest solved,
then on each finer level the coarser solution prolonged and improved by ``cycles`` V-cycles, up to the finest; CG
starts from there (method ``"fmg"``).

CG (:func:`pcg`): preconditioned conjugate gradients on the pinned system, to ``0.1 tol`` of ``||b||`` on its
recursive residual, then checked on the true residual and restarted from it (at most :data:`REFINEMENTS` times) if
above ``0.5 tol``: the stopping rule of :func:`~.solver.pinned_cg`, so the labels match its accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
from scipy.sparse.linalg import LinearOperator

from fieldlab.potential.physics.fem.assembly import OFFSETS
from fieldlab.potential.physics.fem.multigrid import CoarseSolve
from fieldlab.potential.physics.fem.stencil import CHUNK, Stencil, build, load, split
from fieldlab.potential.physics.fem.stencil_mg import galerkin, prolong_add, restrict, smooth

#: Coarsening stops at this many active corners (as :func:`~.multigrid.geometric_hierarchy`).
MAX_COARSE = 500
#: Restarts of CG from the true residual (as :func:`~.solver.pinned_cg`).
REFINEMENTS = 2
#: Gauss-Seidel sweeps before (and after) the coarse correction: on the finest level, on the coarser ones (cheap:
#: the 2x limb needs 10 CG iterations to 1e-6 with (1, 2), 11 with (1, 1), 9 with (2, 2) at 1.3x the time).
SWEEPS = (1, 2)
#: V-cycles per level of nested iteration: with one, the error after full multigrid grows from 1.3x to 1.8x the
#: discretisation error of a manufactured solution from 16 to 48 cells (the cycle contracts by ~0.63); with two it
#: stays within 1.04-1.08x.
NESTED_CYCLES = 2


@numba.njit(nogil=True, cache=True, fastmath=True)
def _dot(a, b, partial, c0, c1):  # pragma: no cover - compiled
    """``partial[c] = sum a[m] b[m]`` over block ``c`` (:data:`~.stencil.CHUNK` values) for ``c0 <= c < c1``."""
    for c in range(c0, c1):
        acc = 0.0
        for m in range(c * CHUNK, min((c + 1) * CHUNK, a.size)):
            acc += a[m] * b[m]
        partial[c] = acc
    return 0.0


def _chunks(size: int) -> np.ndarray:
    return np.zeros(-(-size // CHUNK))


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` of two packed vectors (the same bytes on any number of threads, :func:`~.stencil.split`)."""
    partial = _chunks(a.size)
    split(_dot, a.size, 0, partial.size, a, b, partial)
    return float(partial.sum())


@numba.njit(nogil=True, cache=True, fastmath=True)
def _cg_update(x, r, p, q, alpha, partial, c0, c1):  # pragma: no cover - compiled
    """``x += alpha p``, ``r -= alpha q`` on blocks ``c0 <= c < c1``; ``partial[c]`` = block ``c``'s ``||r||^2``."""
    for c in range(c0, c1):
        acc = 0.0
        for m in range(c * CHUNK, min((c + 1) * CHUNK, x.size)):
            x[m] += alpha * p[m]
            r[m] -= alpha * q[m]
            acc += r[m] * r[m]
        partial[c] = acc
    return 0.0


@numba.njit(nogil=True, cache=True, fastmath=True)
def _direction(p, z, beta, m0, m1):  # pragma: no cover - compiled
    """``p = z + beta p`` on ``m0 <= m < m1``."""
    for m in range(m0, m1):
        p[m] = z[m] + beta * p[m]
    return 0.0


class Hierarchy:
    """Galerkin levels of a pinned fine stencil and its V-cycle (module notes).

    Parameters
    ----------
    fine
        The pinned fine operator (float64).
    dtype
        Float type of the V-cycle (``np.float32`` or ``np.float64``).
    max_coarse
        Coarsening stops at this many active corners.
    sweeps
        Gauss-Seidel sweeps before and after the coarse correction on the finest level and on the coarser ones.
    """

    def __init__(
        self,
        fine: Stencil,
        dtype: type = np.float32,
        max_coarse: int = MAX_COARSE,
        sweeps: tuple[int, int] = SWEEPS,
    ) -> None:
        self.dtype = np.dtype(dtype)
        self.sweeps = sweeps
        ops = [fine]
        while np.count_nonzero(ops[-1].S[0]) > max_coarse:
            coarse = galerkin(ops[-1])
            if np.count_nonzero(coarse.S[0]) > 0.9 * np.count_nonzero(ops[-1].S[0]):  # too thin to coarsen
                break
            ops.append(coarse)
        self.ops = ops
        self.levels = ops  # pyamg's name, for callers that count levels
        self.cycle_ops = [op if self.dtype == np.float64 else Stencil(op.S.astype(self.dtype), op.layout) for op in ops]
        self.inv_diag = []
        for op in self.cycle_ops:
            inv = np.zeros(op.layout.size, dtype=self.dtype)
            np.divide(1.0, op.S[0], out=inv, where=op.S[0] > 0)
            self.inv_diag.append(inv)
        self.longest = [
            max(1, int(np.max(np.where(o.layout.hi > o.layout.lo, o.layout.hi - o.layout.lo, 0)))) for o in ops
        ]
        self.rhs = [o.layout.zeros(self.dtype) for o in ops]
        self.x = [o.layout.zeros(self.dtype) for o in ops]
        self.res = [o.layout.zeros(self.dtype) for o in ops]
        A_c, nodes_c = ops[-1].to_csr()
        self.coarse_index = ops[-1].layout.index(nodes_c)
        self.coarse_solve = CoarseSolve()
        self.coarse_solve(A_c, np.zeros(nodes_c.size))  # factorise now: set-up, not the first cycle, pays it

    def _vcycle(self, level: int) -> None:
        """``x[level] = B rhs[level]``: one V-cycle from zero (module notes)."""
        if level == len(self.ops) - 1:
            self.x[level][self.coarse_index] = self.coarse_solve(None, self.rhs[level][self.coarse_index])
            return
        op, inv, x, b = self.cycle_ops[level], self.inv_diag[level], self.x[level], self.rhs[level]
        sweeps = self.sweeps[min(level, 1)]
        coarse = self.ops[level + 1].layout
        x.fill(0.0)
        for s in range(sweeps):  # forward, backward, forward, ...
            smooth(op, inv, b, x, s % 2 == 0, self.longest[level])
        op.residual(b, x, self.res[level])
        restrict(op.layout, self.res[level], coarse, self.rhs[level + 1])
        self._vcycle(level + 1)
        prolong_add(coarse, self.x[level + 1], op.layout, x)
        for s in range(sweeps - 1, -1, -1):  # the adjoint: the same sweeps reversed, each the other way
            smooth(op, inv, b, x, s % 2 == 1, self.longest[level])

    def cycle(self, r: np.ndarray, z: np.ndarray, level: int = 0) -> None:
        """``z = B r`` on ``level``: one V-cycle from zero for ``A_level z = r`` (float64 in and out)."""
        np.copyto(self.rhs[level], r, casting="same_kind")
        self._vcycle(level)
        np.copyto(z, self.x[level], casting="same_kind")

    def nested(self, b: np.ndarray, cycles: int = NESTED_CYCLES) -> np.ndarray:
        """Full multigrid (module notes): an approximate solution of ``A x = b`` on the finest level, float64."""
        rhs = [b]
        for level in range(len(self.ops) - 1):
            coarse = self.ops[level + 1].layout.zeros()
            restrict(self.ops[level].layout, rhs[-1], self.ops[level + 1].layout, coarse)
            rhs.append(coarse)
        last = len(self.ops) - 1
        x = self.ops[last].layout.zeros()
        x[self.coarse_index] = self.coarse_solve(None, rhs[last][self.coarse_index])
        for level in range(last - 1, -1, -1):
            op = self.ops[level]
            fine = op.layout.zeros()
            prolong_add(self.ops[level + 1].layout, x, op.layout, fine)
            r, z = op.layout.zeros(), op.layout.zeros()
            for _ in range(cycles):
                op.residual(rhs[level], fine, r)
                self.cycle(r, z, level)
                fine += z
            x = fine
        return x


def pcg(
    h: Hierarchy,
    b: np.ndarray,
    x: np.ndarray,
    tol: float,
    maxiter: int,
    callback: Callable[[np.ndarray, float], None] | None = None,
) -> int:
    """Preconditioned CG on the finest level of ``h`` from ``x`` (updated in place) until ``||r|| <= tol ||b||`` or
    ``maxiter`` iterations; ``callback(x, ||r||)`` after each. Returns the iterations."""
    op, size = h.ops[0], b.size
    target = tol * math.sqrt(dot(b, b))
    r, z, q = op.layout.zeros(), op.layout.zeros(), op.layout.zeros()
    rr = op.residual(b, x, r)
    if math.sqrt(rr) <= target or maxiter < 1:
        return 0
    h.cycle(r, z)
    p = z.copy()
    rz = dot(r, z)
    for it in range(1, maxiter + 1):
        pap = op.matvec(p, q)
        if not pap > 0.0:  # the preconditioned residual vanished (float32 cycles underflow near an exact solve)
            return it - 1
        alpha = rz / pap
        partial = _chunks(size)
        split(_cg_update, size, 0, partial.size, x, r, p, q, alpha, partial)
        rr = float(partial.sum())
        if callback is not None:
            callback(x, math.sqrt(rr))
        if math.sqrt(rr) <= target or it == maxiter or not math.isfinite(rr):  # a breakdown is the caller's to see
            return it
        h.cycle(r, z)
        rz, rz_old = dot(r, z), rz
        split(_direction, size, 0, size, p, z, rz / rz_old)
    return maxiter


def refined_cg(h: Hierarchy, b: np.ndarray, x: np.ndarray, tol: float, maxiter: int) -> int:
    """:func:`pcg` to ``0.1 tol``, then restarted from the true residual while it is above ``0.5 tol`` (at most
    :data:`REFINEMENTS` times); returns the iterations in all."""
    iterations = pcg(h, b, x, 0.1 * tol, maxiter)
    r = h.ops[0].layout.zeros()
    bnorm = math.sqrt(dot(b, b))
    for _ in range(REFINEMENTS):
        if math.sqrt(h.ops[0].residual(b, x, r)) <= 0.5 * tol * bnorm:
            break
        iterations += pcg(h, b, x, 0.1 * tol, maxiter)
    return iterations


@dataclass(frozen=True)
class GridSolve:
    """A solve on the packed grid: ``x`` (corner values over ``nodes``, ``x[0] = 0``), the consistent load ``b`` over
    ``nodes``, the true relative residual of the unpinned system, CG iterations, and ``A`` over ``nodes``."""

    x: np.ndarray
    b: np.ndarray
    nodes: np.ndarray
    residual: float
    iterations: int
    A: LinearOperator


def pinned_system(sigma: np.ndarray, source: np.ndarray, mask: np.ndarray, K: np.ndarray, spacing) -> tuple:
    """``(op, b, nodes, packed, row, b0)``: the Q1 stencil pinned at ``nodes[0]`` and its load (pinned entry zeroed),
    the active corners (flat, increasing) and their packed indices, the pinned corner's unpinned row
    (:meth:`~.stencil.Stencil.pin`) and its load ``b0``."""
    op = build(sigma, mask, K)
    b = load(op, source, mask, spacing)
    flat, packed = op.layout.grid_index()  # every corner of the active ranges, in flat order
    active = op.S[0][packed] > 0
    nodes, packed = flat[active], packed[active]
    row = op.pin(int(nodes[0]))
    b0 = float(b[packed[0]])
    b[packed[0]] = 0.0
    return op, b, nodes, packed, row, b0


def pinned_row(op: Stencil, nodes: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(at, coupling)``: positions in ``nodes`` of the pinned corner ``nodes[0]`` and its active neighbours, and
    their couplings ``A[n0, n0 + o]`` (``row`` from :meth:`~.stencil.Stencil.pin`)."""
    corners = np.array(op.layout.corners)
    around = np.array(np.unravel_index(int(nodes[0]), op.layout.corners))[:, None] + OFFSETS.T  # (3, 27)
    keep = np.all((around >= 0) & (around < corners[:, None]), axis=0)
    flat = np.ravel_multi_index(tuple(around[:, keep]), op.layout.corners)
    at = np.searchsorted(nodes, flat)
    inside = (at < nodes.size) & (nodes[np.minimum(at, nodes.size - 1)] == flat)
    return at[inside], row[keep][inside]


def true_residual(op: Stencil, b: np.ndarray, x: np.ndarray, packed: np.ndarray, pinned: tuple, b0: float) -> float:
    """``||b - A x|| / ||b||`` of the unpinned system for ``x`` with the pinned corner at zero: the pinned system's
    residual and the pinned corner's own row ``b0 - sum_o A[n0, n0 + o] x[n0 + o]`` (``pinned`` from
    :func:`pinned_row`)."""
    r = op.layout.zeros()
    rr = op.residual(b, x, r)
    at, coupling = pinned
    own = b0 - float(coupling @ x[packed[at]])
    return math.sqrt(rr + own**2) / math.sqrt(dot(b, b) + b0**2)


def solve_grid(
    sigma: np.ndarray,
    source: np.ndarray,
    mask: np.ndarray,
    K: np.ndarray,
    spacing: tuple[float, float, float],
    tol: float,
    maxiter: int,
    nested: bool = False,
    dtype: type = np.float32,
) -> GridSolve:
    """Solve the Q1 system of a checked sample (``mask`` from :func:`~.solver.check_inputs`, ``K`` from
    :func:`~.solver.element_matrices`) by multigrid-CG on stencils, from zero or from nested iteration."""
    op, b, nodes, packed, row, b0 = pinned_system(sigma, source, mask, K, spacing)
    h = Hierarchy(op, dtype)
    x = h.nested(b) if nested else op.layout.zeros()
    x[packed[0]] = 0.0
    iterations = refined_cg(h, b, x, tol, maxiter)
    x[packed[0]] = 0.0
    pinned = pinned_row(op, nodes, row)
    residual = true_residual(op, b, x, packed, pinned, b0)
    b_nodes = b[packed]
    b_nodes[0] = b0
    return GridSolve(x[packed], b_nodes, nodes, residual, iterations, operator(op, packed, pinned))


def operator(op: Stencil, packed: np.ndarray, pinned: tuple) -> LinearOperator:
    """The unpinned ``A`` over the active corners (packed indices ``packed``) as a LinearOperator: the pinned stencil
    plus the pinned corner's row and column (``pinned`` from :func:`pinned_row`; ``A[n0 + o, n0] = A[n0, n0 + o]``)."""
    n = packed.size
    at, coupling = pinned
    others = at != 0

    def matvec(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64).ravel()
        x, y = op.layout.zeros(), op.layout.zeros()
        x[packed] = v
        op.matvec(x, y)
        out = y[packed]
        out[0] = coupling @ v[at]
        out[at[others]] += coupling[others] * v[0]
        return out

    return LinearOperator((n, n), matvec=matvec, dtype=np.float64)
