"""Finite-element solve of the anisotropic volume-conductor equation -div(sigma grad Phi) = f on a voxel grid.

Discretisation
--------------
Every tissue voxel is one trilinear (Q1) hexahedral element of size ``dx * dy * dz`` carrying its own constant
symmetric tensor ``sigma``; the unknowns sit at the voxel corners touched by at least one tissue element. Air voxels
are excluded from the mesh, which imposes zero normal current at the tissue/air boundary (natural boundary
condition) without an epsilon conductivity. The weak form gives

    A_ab = sum_e  int_e  grad(phi_a)^T sigma_e grad(phi_b) dV,        b_a = sum_e f_e int_e phi_a dV = f_e V_e / 8,

and the returned potential at a voxel centre is the mean of its eight corner values (the Q1 field at the centre).

Solve
-----
The Neumann matrix is singular (constants). The null space is removed by pinning one corner (its row and column
are dropped), the compatible right-hand side is solved by CG preconditioned with multigrid, the true residual
``||b - A u|| / ||b||`` of the full system is checked against ``tol``, and on failure the hierarchy is rebuilt with
the next method before giving up with a :class:`~fieldlab.errors.PhysicsError`. The first method, ``"fmg"``, solves
the same Q1 system as 27-point stencils from the voxel tensors with Galerkin coarse stencils, CG started from full
multigrid, no sparse matrix (:mod:`~.stencil_solve`; ``"mf"`` from zero). The fallbacks are geometric multigrid of
the assembled matrix (``"gmg"``, :mod:`~.multigrid`), then pyamg's smoothed aggregation (``"sa"``) and Ruge-Stuben
(``"rs"``). The gauge is fixed afterwards: zero mean of Phi over tissue voxels.

Every path to an assembled system (the sparse methods, the multi-source solve, the error estimate, the hybrid's
sweeps and the classical rivals on it) goes through :func:`build_system`: check, assemble, load vector, consistent
right-hand side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from fieldlab.errors import InputError, PhysicsError
from fieldlab.potential.physics.fem.assembly import CORNERS, assemble_stencil, pin_first
from fieldlab.potential.physics.fem.multigrid import geometric_hierarchy
from fieldlab.potential.physics.fem.transfer import corners_to_centres, gauge

#: Multigrid methods of the assembled matrix, the fallbacks in this order: geometric, algebraic (SA, Ruge-Stuben).
AMG_METHODS = ("gmg", "sa", "rs")
#: Multigrid-CG on stencils (:mod:`~.mfsolve`) from zero or from full multigrid; a failed check falls back.
STENCIL_METHODS = ("mf", "fmg")
#: The first method unless a caller names another (``physics.solver.method``): the fastest (bench/solver.py).
DEFAULT_METHOD = "fmg"
#: Smoothers of the SA tentative prolongator (:func:`build_hierarchy`); the single-source solve uses the first.
PROLONGATIONS = ("jacobi", "energy")


@dataclass(frozen=True)
class SolveInfo:
    """What one solve did: true relative residual, CG iterations, unknowns, wall time and the multigrid method used."""

    residual: float
    iterations: int
    unknowns: int
    seconds: float
    method: str
    attempts: int

    def to_dict(self) -> dict[str, float | int | str]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def element_matrices(spacing: tuple[float, float, float]) -> np.ndarray:
    """Q1 stiffness matrices of one ``dx * dy * dz`` hexahedron, one per sigma channel: shape ``(6, 8, 8)``.

    ``K_e = sum_c sigma_c K[c]`` with channels (xx, yy, zz, xy, xz, yz) and, for the off-diagonal channels,
    ``K[xy] = G_xy + G_yx`` where ``G_ij[a, b] = int_e d_i phi_a d_j phi_b dV``. The integrand is at most quadratic
    per direction, so the 2-point Gauss rule used here is exact.
    """
    dx, dy, dz = (float(s) for s in spacing)
    h = np.array([dz, dy, dx])  # per array axis (d, h, w)
    g = np.array([0.5 - 0.5 / np.sqrt(3.0), 0.5 + 0.5 / np.sqrt(3.0)])  # Gauss points on [0, 1], weights 1/2
    grads = []  # physical gradient (x, y, z) of each basis function at each Gauss point
    for q in np.array(np.meshgrid(g, g, g, indexing="ij")).reshape(3, -1).T:
        # phi_a(t) = prod_k (c_k t_k + (1 - c_k)(1 - t_k)); d phi_a / d t_k * 1/h_k is the physical derivative.
        lin = np.where(CORNERS == 1, q, 1.0 - q)  # (8, 3) factor per axis
        dlin = np.where(CORNERS == 1, 1.0, -1.0) / h  # (8, 3)
        dphi = np.empty((8, 3))
        for k in range(3):
            others = np.prod(np.delete(lin, k, axis=1), axis=1)
            dphi[:, k] = dlin[:, k] * others
        grads.append(dphi[:, ::-1])  # (d, h, w) -> (x, y, z)
    vol_w = dx * dy * dz / 8.0  # Gauss weight (1/2)^3 times the Jacobian
    G = sum(np.einsum("ai,bj->ijab", d, d) for d in grads) * vol_w  # i, j physical axes; a, b local nodes
    pairs = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
    return np.stack([G[i, j] if i == j else G[i, j] + G[j, i] for i, j in pairs])


def check_inputs(sigma: np.ndarray, source: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Refuse inputs the solver cannot honour; return the tissue mask (voxels with a non-zero tensor).

    Raises :class:`InputError` for shape mismatches, non-finite values, non-positive spacing, a tensor that is not
    positive definite in tissue, a source outside tissue and a source whose total current is not zero.
    """
    sigma = np.asarray(sigma)
    source = np.asarray(source)
    if sigma.ndim != 4 or sigma.shape[-1] != 6:
        raise InputError(f"sigma has shape {sigma.shape}; expected (D, H, W, 6) with channels xx,yy,zz,xy,xz,yz")
    if source.shape != sigma.shape[:3]:
        raise InputError(f"source has shape {source.shape}; expected {sigma.shape[:3]} to match sigma")
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(f"spacing = {tuple(spacing)}; expected three positive finite lengths (dx, dy, dz) in m")
    for name, arr in (("sigma", sigma), ("source", source)):
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{name} holds {int(np.size(arr) - np.isfinite(arr).sum())} non-finite value(s)")
    mask = np.any(sigma != 0, axis=-1)
    if not mask.any():
        raise InputError("sigma is zero everywhere; expected at least one tissue voxel")
    s = sigma[mask]
    # Sylvester's criterion on [[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]].
    m1 = s[:, 0]
    m2 = s[:, 0] * s[:, 1] - s[:, 3] ** 2
    m3 = (
        s[:, 0] * (s[:, 1] * s[:, 2] - s[:, 5] ** 2)
        - s[:, 3] * (s[:, 3] * s[:, 2] - s[:, 5] * s[:, 4])
        + s[:, 4] * (s[:, 3] * s[:, 5] - s[:, 1] * s[:, 4])
    )
    bad = ~((m1 > 0) & (m2 > 0) & (m3 > 0))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(mask)[np.argmax(bad)])
        raise InputError(
            f"sigma is not positive definite at {int(bad.sum())} tissue voxel(s), first at (d, h, w) = {where}: "
            f"{s[np.argmax(bad)].tolist()}; expected a symmetric positive-definite tensor wherever sigma != 0"
        )
    outside = (source != 0) & ~mask
    if outside.any():
        where = tuple(int(i) for i in np.argwhere(outside)[0])
        raise InputError(f"source is non-zero in {int(outside.sum())} air voxel(s), first at (d, h, w) = {where}")
    vol = float(np.prod(spacing))
    total = float(source.sum(dtype=np.float64)) * vol
    scale = float(np.abs(source).sum(dtype=np.float64)) * vol
    if scale == 0:
        raise InputError("source is zero everywhere; expected a current injected and returned (A/m^3)")
    if abs(total) > 1e-6 * scale:
        raise InputError(
            f"source injects a net current of {total:.3e} A (|source| integrates to {scale:.3e} A); "
            "expected zero total current (every injected current must be returned)"
        )
    return mask


def assemble(
    sigma: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float]
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Assemble the Q1 stiffness matrix on the corners of the tissue voxels.

    Returns ``(A, nodes)``: ``A`` the symmetric positive semi-definite CSR matrix over active corners and ``nodes``
    the flat indices (into the ``(D+1, H+1, W+1)`` corner grid) of its rows, in increasing order.

    Notes
    -----
    ``A_ab = sum_e int_e grad(phi_a)^T sigma_e grad(phi_b) dV`` over the tissue voxels ``e`` of ``mask``, built from
    whole-grid 27-point stencil arrays straight into CSR (:func:`~.assembly.assemble_stencil`); entries that are
    round-off of analytic zeros (below 1e-14 of the largest diagonal entry) are not stored.
    """
    return assemble_stencil(sigma, mask, element_matrices(spacing))


def load_vector(
    source: np.ndarray, mask: np.ndarray, nodes: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """Consistent load ``b_a = sum_e f_e V_e / 8`` over the elements touching corner ``a`` (piecewise-constant f)."""
    D, H, W = mask.shape
    fe = np.where(mask, source, 0.0).astype(np.float64) * (float(np.prod(spacing)) / 8.0)
    b = np.zeros((D + 1, H + 1, W + 1))
    for c in CORNERS:
        b[c[0] : c[0] + D, c[1] : c[1] + H, c[2] : c[2] + W] += fe
    return b.ravel()[nodes]


def consistent_load(
    source: np.ndarray, mask: np.ndarray, nodes: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """The right-hand side of the singular Neumann system: :func:`load_vector` less its mean over the unknowns.

    ``A`` has the constants in its null space (``1^T A = 0``), so ``A x = b`` has a solution only if ``1^T b = 0``.
    :func:`check_inputs` holds the source's net current below 1e-6 of its scale; this removes what is left (the
    round-off of the sums), so the system the multigrid-CG solves is consistent.
    """
    b = load_vector(np.asarray(source), mask, nodes, spacing)
    b -= b.sum() / b.size
    return b


@dataclass(frozen=True)
class System:
    """The Q1 system of one sample, ``A x = b`` over the active voxel corners (:func:`build_system`).

    Attributes
    ----------
    A
        ``(n, n)`` CSR stiffness matrix (:func:`assemble`), symmetric, constants in its null space.
    b
        ``(n,)`` consistent right-hand side (:func:`consistent_load`), summing to zero.
    nodes
        ``(n,)`` flat indices (increasing) of the unknowns in the ``(D+1, H+1, W+1)`` corner grid.
    mask
        ``(D, H, W)`` bool tissue voxels.
    spacing
        ``(dx, dy, dz)`` voxel size in metres.
    """

    A: sp.csr_matrix
    b: np.ndarray
    nodes: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]

    def __post_init__(self) -> None:
        n = self.nodes.size
        if self.A.shape != (n, n) or self.b.shape != (n,):
            raise InputError(f"A {self.A.shape} and b {self.b.shape}: expected ({n}, {n}) and ({n},) for {n} nodes")

    @property
    def corner_shape(self) -> tuple[int, int, int]:
        """``(D+1, H+1, W+1)``: corners per axis."""
        return tuple(n + 1 for n in self.mask.shape)  # type: ignore[return-value]

    @property
    def grid(self) -> tuple[np.ndarray, tuple[int, int, int]]:
        """``(nodes, corner_shape)``: the voxel grid a geometric hierarchy needs (:func:`build_hierarchy`)."""
        return self.nodes, self.corner_shape

    def hierarchy(self, method: str = "gmg", seed: int = 0, prolongation: str = "jacobi"):
        """Multigrid hierarchy of the pinned ``A[1:, 1:]`` (:func:`build_hierarchy`); seed 0 and the first method
        are the ones the solve tries first."""
        return build_hierarchy(pin_first(self.A), method, seed, prolongation, grid=self.grid)

    def centres(self, x: np.ndarray) -> np.ndarray:
        """Corner values over ``nodes`` -> ``(D, H, W)`` potential at voxel centres in the corpus gauge (zero mean
        over tissue, zero in air)."""
        return gauge(corners_to_centres(x, self.nodes, self.mask), self.mask)

    def corners(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Corner values over ``nodes`` -> ``(phi, active)`` on the whole ``(D+1, H+1, W+1)`` corner grid: ``phi``
        zero and ``active`` false at corners that touch no tissue voxel."""
        phi = np.zeros(int(np.prod(self.corner_shape)))
        phi[self.nodes] = x
        active = np.zeros(phi.size, dtype=bool)
        active[self.nodes] = True
        return phi.reshape(self.corner_shape), active.reshape(self.corner_shape)


def build_system(sigma: np.ndarray, source: np.ndarray, spacing: tuple[float, float, float]) -> System:
    """Check the sample (:func:`check_inputs`), assemble ``A`` (:func:`assemble`) and its consistent right-hand side
    (:func:`consistent_load`): the one way from a sample's arrays to its Q1 system.

    Examples
    --------
    >>> sigma = np.zeros((2, 2, 2, 6)); sigma[..., :3] = 1.0
    >>> f = np.zeros((2, 2, 2)); f[0, 0, 0], f[1, 1, 1] = 1.0, -1.0
    >>> system = build_system(sigma, f, (1.0, 1.0, 1.0))
    >>> system.A.shape, system.corner_shape, bool(abs(system.b.sum()) < 1e-15)
    ((27, 27), (3, 3, 3), True)
    """
    mask = check_inputs(sigma, source, spacing)
    A, nodes = assemble(np.asarray(sigma), mask, spacing)
    b = consistent_load(source, mask, nodes, spacing)
    return System(A, b, nodes, mask, tuple(float(v) for v in spacing))  # type: ignore[arg-type]


def build_hierarchy(
    Ar: sp.csr_matrix,
    method: str,
    seed: int,
    prolongation: str = "jacobi",
    *,
    grid: tuple[np.ndarray, tuple[int, int, int]] | None = None,
):
    """Multigrid hierarchy (a ``pyamg.MultilevelSolver``) of the pinned matrix ``Ar = A[1:, 1:]``.

    ``method`` is ``"gmg"`` (geometric: trilinear prolongation of the voxel grid and Galerkin coarse operators,
    :func:`~.multigrid.geometric_hierarchy`; needs ``grid = (nodes, corner_shape)`` from :func:`assemble`), ``"mf"``
    / ``"fmg"`` (the same levels as stencils, :class:`~.stencil_solve.PinnedMultilevel`; ``grid`` too), ``"sa"``
    (smoothed aggregation) or ``"rs"`` (Ruge-Stuben). ``seed`` seeds the random vectors pyamg's algebraic
    setups draw for their spectral radius estimates, so the same matrix and seed give the same hierarchy (the
    geometric one draws none). ``prolongation`` smooths the SA tentative prolongator: ``"jacobi"`` (pyamg's default)
    or ``"energy"`` (energy minimisation; ignored by ``"gmg"`` and ``"rs"``).
    """
    import pyamg

    if method not in AMG_METHODS + STENCIL_METHODS:
        raise InputError(f"method = {method!r}; expected one of {', '.join(AMG_METHODS + STENCIL_METHODS)}")
    if prolongation not in PROLONGATIONS:
        raise InputError(f"prolongation = {prolongation!r}; expected one of {', '.join(PROLONGATIONS)}")
    if method in ("gmg", *STENCIL_METHODS):
        if grid is None:
            raise InputError(f"method = {method!r} needs grid = (nodes, corner_shape); expected the voxel grid of A")
        if method != "gmg":
            from fieldlab.potential.physics.fem.stencil_solve import PinnedMultilevel

            return PinnedMultilevel(Ar, grid[0], grid[1], nested=method == "fmg")
        return geometric_hierarchy(Ar, grid[0], grid[1])
    # pyamg draws random vectors (spectral radius estimates) from NumPy's legacy global RNG: seed it, then restore.
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        if method == "sa" and prolongation == "energy":
            return pyamg.smoothed_aggregation_solver(Ar, symmetry="symmetric", max_coarse=500, smooth="energy")
        if method == "sa":
            return pyamg.smoothed_aggregation_solver(Ar, symmetry="symmetric", max_coarse=500)
        return pyamg.ruge_stuben_solver(Ar, max_coarse=500)
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _amg_solve(
    A: sp.csr_matrix,
    b: np.ndarray,
    method: str,
    tol: float,
    maxiter: int,
    seed: int,
    grid: tuple[np.ndarray, tuple[int, int, int]],
) -> tuple[np.ndarray, int]:
    """Pin row 0, build a multigrid hierarchy and run preconditioned CG; return the full solution and iterations."""
    Ar = pin_first(A)
    return pinned_cg(build_hierarchy(Ar, method, seed, grid=grid), Ar, b, tol, maxiter)


def pinned_cg(ml, Ar: sp.csr_matrix, b: np.ndarray, tol: float, maxiter: int) -> tuple[np.ndarray, int]:
    """CG on ``Ar x = b[1:]`` preconditioned by the hierarchy ``ml``, to ``tol * 0.1`` then refined on the true
    residual; return the full solution (``x[0] = 0``, the pinned corner) and the CG iterations."""
    br = b[1:]
    residuals: list[float] = []
    x = ml.solve(br, tol=tol * 0.1, maxiter=maxiter, accel="cg", residuals=residuals)
    iterations = max(len(residuals) - 1, 0)
    bnorm = float(np.linalg.norm(br))
    for _ in range(2):  # iterative refinement: CG's recursive residual drifts from the true one at tight tol
        r = br - Ar @ x
        rnorm = float(np.linalg.norm(r))
        if rnorm <= 0.5 * tol * bnorm or rnorm == 0:
            break
        residuals = []
        x = x + ml.solve(r, tol=min(0.5, 0.1 * tol * bnorm / rnorm), maxiter=maxiter, accel="cg", residuals=residuals)
        iterations += max(len(residuals) - 1, 0)
    return np.concatenate([[0.0], x]), iterations


def _solve_nodes(
    sigma: np.ndarray,
    source: np.ndarray,
    spacing: tuple[float, float, float],
    tol: float,
    maxiter: int,
    method: str,
    max_attempts: int,
) -> tuple[np.ndarray, System, SolveInfo]:
    """Build the system and solve it; return ``(x, system, info)``: ``x`` the corner values over ``system.nodes``
    (pinned corner 0, no gauge fixed), ``info`` with ``seconds`` left at 0."""
    if method not in AMG_METHODS + STENCIL_METHODS:
        raise InputError(f"method = {method!r}; expected one of {', '.join(AMG_METHODS + STENCIL_METHODS)}")
    system = None if method in STENCIL_METHODS else build_system(sigma, source, spacing)
    order = [method] + [m for m in AMG_METHODS if m != method]
    residual, iterations, used = np.inf, 0, order[0]
    for attempt in range(max_attempts):
        used = order[attempt % len(order)]
        if used in STENCIL_METHODS:  # no sparse matrix unless the stencil solve fails its check
            from fieldlab.potential.physics.fem.stencil_solve import solve_sample

            x, system, iterations, residual = solve_sample(sigma, source, spacing, tol, maxiter, used == "fmg")
        else:
            system = system if system is not None and sp.issparse(system.A) else build_system(sigma, source, spacing)
            x, iterations = _amg_solve(system.A, system.b, used, tol, maxiter, seed=attempt, grid=system.grid)
            residual = float(np.linalg.norm(system.b - system.A @ x)) / float(np.linalg.norm(system.b))
        if np.isfinite(residual) and residual <= tol:
            break
    else:
        raise PhysicsError(
            f"multigrid-CG did not converge: relative residual {residual:.2e} > tol {tol:.0e} after {max_attempts} "
            f"attempt(s) ({', '.join(order[a % len(order)] for a in range(max_attempts))}); {system.nodes.size} "
            "unknowns"
        )
    return x, system, SolveInfo(residual, iterations, int(system.nodes.size), 0.0, used, attempt + 1)


def solve_corners(
    sigma: np.ndarray,
    source: np.ndarray,
    spacing: tuple[float, float, float],
    tol: float = 1e-8,
    *,
    maxiter: int = 300,
    method: str = DEFAULT_METHOD,
    max_attempts: int = 3,
) -> tuple[np.ndarray, np.ndarray, SolveInfo]:
    """The same solve as :func:`solve_potential`, returned where the unknowns live: on the voxel corners.

    Returns
    -------
    phi : ``(D+1, H+1, W+1)`` float64 corner values in volts, zero at corners that touch no tissue voxel; the gauge
        is not fixed (one corner is pinned to 0). Inside a tissue voxel the Q1 field is the trilinear interpolant of
        its eight corners.
    active : ``(D+1, H+1, W+1)`` bool, the corners that are unknowns.
    info : :class:`SolveInfo`.
    """
    t0 = time.perf_counter()
    x, system, info = _solve_nodes(sigma, source, spacing, tol, maxiter, method, max_attempts)
    phi, active = system.corners(x)
    return phi, active, replace(info, seconds=time.perf_counter() - t0)


def solve_potential(
    sigma: np.ndarray,
    source: np.ndarray,
    spacing: tuple[float, float, float],
    tol: float = 1e-8,
    *,
    maxiter: int = 300,
    method: str = DEFAULT_METHOD,
    max_attempts: int = 3,
) -> tuple[np.ndarray, SolveInfo]:
    """Solve ``-div(sigma grad Phi) = f`` in tissue with zero normal current at the air boundary.

    Parameters
    ----------
    sigma
        ``(D, H, W, 6)`` conductivity in S/m, channels (xx, yy, zz, xy, xz, yz); zero marks air.
    source
        ``(D, H, W)`` current density in A/m^3 (positive = injected), zero in air, integrating to zero.
    spacing
        ``(dx, dy, dz)`` voxel size in metres (W, H, D axes respectively).
    tol
        Required true relative residual ``||b - A u|| / ||b||`` of the assembled system.
    maxiter, method, max_attempts
        CG iteration cap, first multigrid method (``"gmg"``, ``"sa"``, ``"rs"``, or ``"mf"`` / ``"fmg"`` on stencils;
        the others of :data:`AMG_METHODS` follow in order as fallbacks) and how many hierarchies to try.

    Returns
    -------
    u : ``(D, H, W)`` float64 potential in volts at voxel centres, zero in air, zero mean over tissue.
    info : :class:`SolveInfo`.

    Examples
    --------
    >>> import numpy as np
    >>> sigma = np.zeros((4, 4, 4, 6)); sigma[..., :3] = 1.0
    >>> f = np.zeros((4, 4, 4)); f[0, 0, 0], f[3, 3, 3] = 1.0, -1.0
    >>> u, info = solve_potential(sigma, f, (1.0, 1.0, 1.0))
    >>> bool(u[0, 0, 0] > 0 > u[3, 3, 3]), info.residual < 1e-8
    (True, True)
    """
    t0 = time.perf_counter()
    x, system, info = _solve_nodes(sigma, source, spacing, tol, maxiter, method, max_attempts)
    return system.centres(x), replace(info, seconds=time.perf_counter() - t0)
