"""One limb, many sources: the Q1 system assembled once and one multigrid hierarchy reused for every right-hand side.

The source enters the finite-element system only through the load vector (:func:`~.solver.consistent_load`,
``b_a = sum_e f_e V_e / 8``); the matrix ``A_ab = sum_e int_e grad(phi_a)^T sigma_e grad(phi_b) dV`` and its
multigrid hierarchy depend on the conductivity and the grid alone. :class:`LimbSystem` therefore assembles ``A`` and
builds the hierarchy once and solves ``A u_k = b_k`` for each source ``k`` with the same preconditioned CG and the same
checks as :func:`~.solver.solve_potential`:

- every source is checked (:func:`~.solver.check_inputs`) and its true relative residual ``||b_k - A u_k|| / ||b_k||``
  must reach ``tol``;
- a source whose solve stalls gets a fresh hierarchy (the next method and seed, as the single-source fallback)
  and is solved again, up to ``max_attempts`` hierarchies per source; the fresh hierarchy serves the following
  sources;
- each potential is moved to voxel centres and the gauge is fixed as in the corpus (zero mean over tissue).

The first hierarchy is the one :func:`~.solver.solve_potential` builds (same method, seed 0), so every source that
needs no fallback gets bit for bit the potential a separate single-source solve gives.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from fieldlab.errors import InputError, PhysicsError
from fieldlab.potential.physics.fem.assembly import pin_first
from fieldlab.potential.physics.fem.solver import (
    AMG_METHODS,
    DEFAULT_METHOD,
    PROLONGATIONS,
    STENCIL_METHODS,
    SolveInfo,
    assemble,
    build_hierarchy,
    check_inputs,
    consistent_load,
    pinned_cg,
)
from fieldlab.potential.physics.fem.transfer import corners_to_centres, gauge


class LimbSystem:
    """The assembled Q1 system of one conductivity volume and its current multigrid hierarchy.

    Parameters
    ----------
    sigma
        ``(D, H, W, 6)`` conductivity in S/m (channels xx, yy, zz, xy, xz, yz); zero marks air.
    spacing
        ``(dx, dy, dz)`` voxel size in metres.
    method
        First multigrid method: ``"fmg"`` (the default) or ``"mf"``, the stencil levels of the assembled matrix
        (:class:`~.stencil_solve.PinnedMultilevel`, from full multigrid or from zero), ``"gmg"`` (geometric),
        ``"sa"`` or ``"rs"``; the fallbacks follow in the order of :data:`~.solver.AMG_METHODS`.
    prolongation
        SA prolongation smoother, ``"jacobi"`` (the single-source solve's) or ``"energy"``
        (:func:`~.solver.build_hierarchy`); used only by an ``"sa"`` hierarchy.

    Attributes
    ----------
    builds : int
        Multigrid hierarchies built so far (1 after the first solve unless a solve stalled).
    seconds_shared : float
        Wall time of the assembly and of every hierarchy build, the part shared by all sources.
    """

    def __init__(
        self,
        sigma: np.ndarray,
        spacing: tuple[float, float, float],
        method: str = DEFAULT_METHOD,
        prolongation: str = "jacobi",
    ) -> None:
        if method not in AMG_METHODS + STENCIL_METHODS:
            raise InputError(f"method = {method!r}; expected one of {', '.join(AMG_METHODS + STENCIL_METHODS)}")
        if prolongation not in PROLONGATIONS:
            raise InputError(f"prolongation = {prolongation!r}; expected one of {', '.join(PROLONGATIONS)}")
        self.prolongation = prolongation
        t0 = time.perf_counter()
        self.sigma = np.asarray(sigma)
        self.spacing = tuple(float(s) for s in spacing)
        self.mask = np.any(self.sigma != 0, axis=-1)
        self.A, self.nodes = assemble(self.sigma, self.mask, self.spacing)  # type: ignore[arg-type]
        self.Ar: sp.csr_matrix = pin_first(self.A)
        self.grid = (self.nodes, tuple(n + 1 for n in self.mask.shape))  # the voxel corner grid, for "gmg"
        self.order = [method] + [m for m in AMG_METHODS if m != method]
        self.builds = 0
        self._ml = None
        self.seconds_shared = time.perf_counter() - t0

    @property
    def method(self) -> str:
        """The multigrid method of the current (or next) hierarchy."""
        return self.order[max(self.builds - 1, 0) % len(self.order)]

    def _build(self) -> None:
        """Build hierarchy number ``builds`` (method ``order[builds % len(order)]``, seed ``builds``), as the fallback
        does."""
        t0 = time.perf_counter()
        method = self.order[self.builds % len(self.order)]
        self._ml = build_hierarchy(self.Ar, method, seed=self.builds, prolongation=self.prolongation, grid=self.grid)
        self.builds += 1
        self.seconds_shared += time.perf_counter() - t0

    def hierarchy(self):
        """The current multigrid hierarchy (``pyamg.MultilevelSolver`` of ``Ar``), built on first use."""
        if self._ml is None:
            self._build()
        return self._ml

    def rhs(self, source: np.ndarray) -> np.ndarray:
        """The consistent right-hand side of ``source`` on this limb, checked as the solver checks a sample
        (:func:`~.solver.check_inputs`, :func:`~.solver.consistent_load`: the per-source half of
        :func:`~.solver.build_system`)."""
        check_inputs(self.sigma, source, self.spacing)  # type: ignore[arg-type]
        return consistent_load(source, self.mask, self.nodes, self.spacing)  # type: ignore[arg-type]

    def solve_nodes(
        self, source: np.ndarray, tol: float = 1e-8, maxiter: int = 300, max_attempts: int = 3
    ) -> tuple[np.ndarray, SolveInfo]:
        """Corner values (over ``nodes``, corner 0 pinned, no gauge) for one source, and what the solve did.

        ``info.seconds`` is this source's own time (checks, load vector, CG), without the shared part (assembly and
        every hierarchy build, fallbacks included: :attr:`seconds_shared`).
        """
        t0 = time.perf_counter()
        b = self.rhs(source)
        bnorm = float(np.linalg.norm(b))
        shared0 = self.seconds_shared
        residual, iterations, tried = np.inf, 0, 0
        for tried in range(1, max_attempts + 1):
            if tried > 1:
                self._build()  # a fresh hierarchy after a stall
            x, iterations = pinned_cg(self.hierarchy(), self.Ar, b, tol, maxiter)
            residual = float(np.linalg.norm(b - self.A @ x)) / bnorm
            if np.isfinite(residual) and residual <= tol:
                break
        else:
            raise PhysicsError(
                f"multigrid-CG did not converge: relative residual {residual:.2e} > tol {tol:.0e} after {max_attempts} "
                f"hierarchies ({self.builds} built for this limb); {self.nodes.size} unknowns"
            )
        own = time.perf_counter() - t0 - (self.seconds_shared - shared0)
        info = SolveInfo(residual, iterations, int(self.nodes.size), own, self.method, tried)
        return x, info

    def solve(
        self, source: np.ndarray, tol: float = 1e-8, maxiter: int = 300, max_attempts: int = 3
    ) -> tuple[np.ndarray, SolveInfo]:
        """``(D, H, W)`` potential in volts at voxel centres (zero in air, zero mean over tissue) and its info."""
        x, info = self.solve_nodes(source, tol, maxiter, max_attempts)
        t0 = time.perf_counter()
        u = gauge(corners_to_centres(x, self.nodes, self.mask), self.mask)
        return u, replace(info, seconds=info.seconds + time.perf_counter() - t0)


@dataclass(frozen=True)
class MultiSolve:
    """The potentials of ``K`` sources on one limb and what it cost.

    ``u`` is ``(K, D, H, W)`` in volts; ``infos[k].seconds`` is source ``k``'s amortised cost, its own solve time
    plus ``seconds_shared / K``; ``builds`` counts the hierarchies built (1 when no solve stalled).
    """

    u: np.ndarray
    infos: list[SolveInfo]
    builds: int
    seconds_shared: float


def solve_potential_many(
    sigma: np.ndarray,
    sources: Sequence[np.ndarray] | np.ndarray,
    spacing: tuple[float, float, float],
    tol: float = 1e-8,
    *,
    maxiter: int = 300,
    method: str = DEFAULT_METHOD,
    max_attempts: int = 3,
    prolongation: str = "jacobi",
) -> MultiSolve:
    """Solve ``-div(sigma grad Phi_k) = f_k`` for every source ``f_k`` on one conductivity volume.

    Parameters
    ----------
    sigma
        ``(D, H, W, 6)`` conductivity in S/m; zero marks air.
    sources
        ``K`` current densities ``(D, H, W)`` in A/m^3 (a sequence or a ``(K, D, H, W)`` array), each zero in air
        and integrating to zero.
    spacing, tol, maxiter, method, max_attempts
        As :func:`~.solver.solve_potential`; ``max_attempts`` bounds the hierarchies tried per source.
    prolongation
        ``"jacobi"`` (default) builds the single-source solve's hierarchy; ``"energy"`` an energy-minimising SA
        hierarchy (see :class:`LimbSystem`).

    Returns
    -------
    MultiSolve
        The ``K`` potentials (each as :func:`~.solver.solve_potential` returns it), their infos and the number of
        hierarchy builds.

    Examples
    --------
    >>> import numpy as np
    >>> sigma = np.zeros((4, 4, 4, 6)); sigma[..., :3] = 1.0
    >>> f = np.zeros((2, 4, 4, 4)); f[0, 0, 0, 0] = f[1, 0, 3, 0] = 1.0; f[:, 3, 3, 3] = -1.0
    >>> out = solve_potential_many(sigma, f, (1.0, 1.0, 1.0))
    >>> out.u.shape, out.builds, all(i.residual < 1e-8 for i in out.infos)
    ((2, 4, 4, 4), 1, True)
    """
    sources = list(sources)
    if not sources:
        raise InputError("sources is empty; expected at least one (D, H, W) current density")
    system = LimbSystem(sigma, spacing, method, prolongation)
    us, infos = [], []
    for f in sources:
        u, info = system.solve(f, tol, maxiter, max_attempts)
        us.append(u)
        infos.append(info)
    share = system.seconds_shared / len(sources)
    infos = [replace(i, seconds=i.seconds + share) for i in infos]
    return MultiSolve(np.stack(us), infos, system.builds, system.seconds_shared)
