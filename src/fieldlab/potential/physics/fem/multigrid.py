"""Geometric multigrid for the Q1 system of a voxel grid: trilinear prolongation and Galerkin coarse operators.

The unknowns of the fine level are the active corners of the ``(N0, N1, N2)`` corner grid. The coarse grid keeps every
second corner per axis, ``M_i = N_i // 2 + 1`` corners (a virtual one past the end when ``N_i`` is even). The
prolongation is the trilinear interpolant from coarse to fine corners, a tensor product of the 1D weights

    P_1D[i, j] = 1 if i = 2 j,   1/2 if |i - 2 j| = 1,   0 otherwise,

restricted to the rows of the active fine corners; the coarse unknowns are the coarse corners with a non-zero weight
to an active fine corner (so every row of ``P`` sums to 1: constants are prolonged exactly, the Neumann near null
space). The coarse operator is Galerkin's ``A_c = P^T A P``, which keeps the variational property (the coarse
correction minimises the energy error over ``range(P)``) whatever the conductivity jumps, and stays a 27-point
operator on the coarse grid (Q1 on Q1). Levels are added until at most ``max_coarse`` unknowns remain (or a level
would keep over 90% of them); the coarsest is solved by a sparse LU factorisation (:class:`CoarseSolve`; ``A_c`` of
a connected pinned system is positive definite, and a dense pseudo-inverse's SVD cost 0.1 s at 367 unknowns, up to
1.7 s once torch's threads had run in the same process, against milliseconds for SuperLU), with the pseudo-inverse
kept for a singular one (tissue in two pieces touching only at a corner leaves one piece unpinned). The cycle is
pyamg's
(:class:`pyamg.multilevel.MultilevelSolver`), with a symmetric smoother so that the V-cycle is a symmetric
positive-definite preconditioner for CG.

The pinned system ``A[1:, 1:]`` (corner 0 fixed, :func:`~.solver.pinned_cg`) takes the first prolongator without its
row 0; a coarse unknown left without fine rows is dropped.

References
----------
Trottenberg, Oosterlee, Schueller, *Multigrid* (2001), sections 2.3 and 7.7 (Galerkin coarse-grid operators).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Smoothers (pyamg names and options) of the geometric V-cycle; both symmetric, so the cycle preconditions CG.
SMOOTHERS = {
    "gauss_seidel": ("gauss_seidel", {"sweep": "symmetric", "iterations": 1}),
    "jacobi": ("jacobi", {"omega": 2.0 / 3.0, "iterations": 2}),
}


def trilinear_prolongator(
    active: np.ndarray, shape: tuple[int, int, int], factor: tuple[int, int, int] = (2, 2, 2)
) -> tuple[sp.csr_matrix, np.ndarray, tuple[int, int, int]]:
    """Trilinear prolongation from the corners of a grid of ``factor`` times coarser cells to the ``active`` corners.

    Along an axis coarsened by ``r`` a fine corner ``i`` lies on coarse edge ``j = i // r`` at ``s = (i mod r) / r``
    and takes ``1 - s`` of coarse corner ``j`` and ``s`` of corner ``j + 1``; the 3D weights are the products. For
    ``r = 2`` these are the 1D weights of the module notes; a factor 4 is two factor-2 prolongators composed (the hat
    function of a coarse corner is a sum of fine ones).

    Parameters
    ----------
    active
        Flat indices (increasing) of the fine unknowns in the corner grid of ``shape``.
    shape
        ``(N0, N1, N2)`` corners per axis of the fine grid.
    factor
        Fine cells per coarse cell along each axis (each >= 1); where ``N_i - 1`` is not a multiple of it the last
        coarse cell reaches past the grid (a virtual corner, as the module notes).

    Returns
    -------
    P : ``(active.size, coarse.size)`` CSR, rows summing to 1.
    coarse : flat indices (increasing) of the coarse unknowns in the coarse corner grid.
    coarse_shape : ``ceil((N_i - 1) / factor_i) + 1`` per axis (``N_i // 2 + 1`` for the default factor 2).

    Examples
    --------
    >>> P, coarse, cshape = trilinear_prolongator(np.arange(5), (5, 1, 1), (4, 1, 1))  # one coarse cell of 4 fine
    >>> cshape, P.toarray().tolist()
    ((2, 1, 1), [[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.0, 1.0]])
    """
    r = tuple(int(v) for v in factor)
    if len(r) != 3 or min(r) < 1:
        raise ValueError(f"factor = {factor}; expected three whole numbers of fine cells per coarse cell, each >= 1")
    coarse_shape = tuple(-(-(int(n) - 1) // f) + 1 for n, f in zip(shape, r, strict=True))
    idx = np.unravel_index(np.asarray(active), shape)
    lo = [i // f for i, f in zip(idx, r, strict=True)]  # coarse corner at or below the fine corner, per axis
    frac = [(i % f) / f for i, f in zip(idx, r, strict=True)]  # where between it and the next one
    n = np.asarray(active).size
    cols = np.empty((n, 8), dtype=np.int64)  # (fine row, s): s_i = 0 the coarse corner lo_i, 1 lo_i + 1
    vals = np.empty((n, 8))
    for j, s in enumerate(np.ndindex(2, 2, 2)):  # ascending coarse index per row: CSR rows come out sorted
        w = np.ones(n)
        for ax in range(3):
            w *= frac[ax] if s[ax] else 1.0 - frac[ax]
        vals[:, j] = w
        cols[:, j] = np.ravel_multi_index(
            tuple(np.minimum(lo[ax] + s[ax], coarse_shape[ax] - 1) for ax in range(3)), coarse_shape
        )  # clipped only where the weight is zero (a fine corner on the last coarse corner)
    keep = vals > 0
    used = np.zeros(int(np.prod(coarse_shape)), dtype=bool)
    used[cols[keep]] = True
    coarse = np.flatnonzero(used)
    renumber = np.full(used.size, -1, dtype=np.int64)
    renumber[coarse] = np.arange(coarse.size)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    P = sp.csr_matrix((vals[keep], renumber[cols[keep]], indptr), shape=(n, coarse.size))
    return P, coarse, coarse_shape  # type: ignore[return-value]


class CoarseSolve:
    """The coarsest level's exact solve for pyamg: SuperLU, factored on the first call; the pseudo-inverse if the
    matrix is singular (the solution of least norm, as pyamg's ``"pinv"``).

    The pinned sparse levels of :func:`geometric_hierarchy` come here; the dense, unpinned coarsest level of the
    matrix-free hierarchy (:mod:`~.matfree`) goes to :meth:`neumann`, the same least-norm solution for its one
    null space (constants), without LAPACK.
    """

    def __init__(self) -> None:
        self._solve = None

    def __call__(self, A: sp.spmatrix, b: np.ndarray) -> np.ndarray:
        if self._solve is None:
            from scipy.linalg import pinv
            from scipy.sparse.linalg import splu

            try:
                self._solve = splu(sp.csc_matrix(A)).solve
            except RuntimeError:  # exactly singular
                inverse = pinv(A.toarray())
                self._solve = inverse.__matmul__
        return self._solve(np.asarray(b, dtype=np.float64))

    @staticmethod
    def neumann(a: np.ndarray, r: np.ndarray) -> np.ndarray:
        """The least-norm solution ``pinv(a) r`` of a dense singular Neumann system (a few hundred unknowns, ``r``
        summing to zero over the active corners, the tissue connected) by Gaussian elimination in plain array
        operations.

        Corners with no tissue (zero rows) get zero. The constant null space is lifted by ``a + mean(diag) 1 1^T / n``,
        which leaves the solution of a zero-sum ``r`` unchanged but for a constant, removed at the end. No LAPACK
        call: on shared cores a threaded BLAS call of this size can wait far longer than it computes.
        """
        x = np.zeros(r.size)
        active = np.flatnonzero(np.diagonal(a) > 0)
        m = a[np.ix_(active, active)]
        n = active.size
        m += np.mean(np.diagonal(m)) / n
        rhs = r[active] - np.mean(r[active])
        for j in range(n - 1):  # forward elimination (symmetric positive definite: no pivoting)
            f = m[j + 1 :, j] / m[j, j]
            m[j + 1 :, j + 1 :] -= np.multiply.outer(f, m[j, j + 1 :])
            rhs[j + 1 :] -= f * rhs[j]
        y = np.zeros(n)
        for j in range(n - 1, -1, -1):
            y[j] = (rhs[j] - np.sum(m[j, j + 1 :] * y[j + 1 :])) / m[j, j]
        x[active] = y - np.mean(y)
        return x


def geometric_hierarchy(
    Ar: sp.csr_matrix,
    nodes: np.ndarray,
    shape: tuple[int, int, int],
    max_coarse: int = 500,
    smoother: str = "gauss_seidel",
):
    """Geometric multigrid hierarchy (a ``pyamg.MultilevelSolver``) of the pinned Q1 matrix ``Ar = A[1:, 1:]``.

    Parameters
    ----------
    Ar
        The pinned matrix: rows and columns of ``nodes[1:]``.
    nodes
        Flat indices (increasing) of the unknowns of ``A`` in the ``(D+1, H+1, W+1)`` corner grid ``shape``.
    shape
        Corners per axis.
    max_coarse
        Coarsening stops at this many unknowns (then a sparse LU factorisation).
    smoother
        A key of :data:`SMOOTHERS`.

    Returns
    -------
    pyamg.multilevel.MultilevelSolver
        Levels ``A_0 = Ar``, ``A_{l+1} = P_l^T A_l P_l`` with trilinear ``P_l``; deterministic (no random vectors).
    """
    from pyamg.multilevel import MultilevelSolver
    from pyamg.relaxation.smoothing import change_smoothers

    if smoother not in SMOOTHERS:
        raise ValueError(f"smoother = {smoother!r}; expected one of {', '.join(SMOOTHERS)}")
    if Ar.shape[0] != nodes.size - 1:
        raise ValueError(f"Ar has {Ar.shape[0]} rows; expected nodes.size - 1 = {nodes.size - 1} (corner 0 pinned)")
    levels = []
    A, active, grid, first = Ar.tocsr(), nodes, tuple(int(n) for n in shape), True
    while A.shape[0] > max_coarse:
        P, coarse, coarse_grid = trilinear_prolongator(active, grid)
        if coarse.size > 0.9 * active.size:  # a grid too thin to coarsen further
            break
        grid = coarse_grid
        if first:  # the pinned corner: drop its row and any coarse unknown it alone touched
            P = P[1:]
            used = np.diff(P.tocsc().indptr) > 0
            if not used.all():
                P, coarse = P[:, used].tocsr(), coarse[used]
            first = False
        level = MultilevelSolver.Level()
        level.A, level.P, level.R = A, P, P.T.tocsr()
        levels.append(level)
        A = (level.R @ (A @ P)).tocsr()  # Galerkin: A_c = P^T A P
        A.sort_indices()
        active = coarse
    last = MultilevelSolver.Level()
    last.A = A
    levels.append(last)
    ml = MultilevelSolver(levels, coarse_solver=CoarseSolve())
    change_smoothers(ml, SMOOTHERS[smoother], SMOOTHERS[smoother])
    return ml
