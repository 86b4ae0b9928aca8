"""The MLS-MPM simulator: particle and grid arrays on a Warp device, advanced substep by substep.

One substep is two launches per particle chunk (see :mod:`fieldlab.mpm.kernels`): ``grid_update`` (over grid rows)
then ``g2p_p2g``. On the CPU, ``threads`` chunks run concurrently from Python threads, each with a private grid
slice (Warp's CPU launches are single-threaded and release the GIL); results depend on ``threads`` only through
the order of floating-point sums.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fieldlab.config import MPMConfig
from fieldlab.errors import ConfigError, PhysicsError
from fieldlab.mpm.engine import init_warp, resolve_device
from fieldlab.mpm.scenes import ParticleSet

if TYPE_CHECKING:
    from fieldlab.mpm import kernels as K  # imports Warp: only when a simulator is built


@dataclass(frozen=True)
class MPMPhysics:
    """Every constant of one simulation (domain [0, 1]^2; SI-like units as in Taichi's examples).

    ``mu_0 = E / (2 (1 + nu))``, ``lambda_0 = E nu / ((1 + nu) (1 - 2 nu))``, ``dx = 1 / n_grid``,
    ``V_p = (particle_size dx)^2``, ``m_p = density[material] V_p``.
    """

    n_grid: int = 128
    dt: float = 1e-4
    E: float = 5e3
    nu: float = 0.2
    gravity: tuple[float, float] = (0.0, -30.0)
    density: tuple[float, float, float] = (1.0, 1.0, 1.0)
    particle_size: float = 0.5
    hardening: float = 10.0
    h_min: float = 0.1
    h_max: float = 5.0
    jelly_h: float = 0.3
    snow_clamp: tuple[float, float] = (1.0 - 2.5e-2, 1.0 + 4.5e-3)
    wall_cells: int = 3

    def __post_init__(self) -> None:
        checks = (
            ("n_grid", self.n_grid >= 8, ">= 8"),
            ("dt", self.dt > 0 and math.isfinite(self.dt), "a finite number > 0"),
            ("E", self.E > 0, "> 0"),
            ("nu", 0 <= self.nu < 0.5, "in [0, 0.5)"),
            ("density", len(self.density) == 3 and min(self.density) > 0, "three values > 0"),
            ("particle_size", self.particle_size > 0, "> 0"),
            ("snow_clamp", self.snow_clamp[0] <= 1.0 <= self.snow_clamp[1], "[lo, hi] with lo <= 1 <= hi"),
            ("wall_cells", 0 <= self.wall_cells < self.n_grid // 2, f"in [0, {self.n_grid // 2})"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"mpm physics: {name} = {getattr(self, name)!r}: expected {expected}")

    @property
    def dx(self) -> float:
        return 1.0 / self.n_grid

    @property
    def p_vol(self) -> float:
        return (self.particle_size * self.dx) ** 2

    @property
    def mu_0(self) -> float:
        return self.E / (2.0 * (1.0 + self.nu))

    @property
    def lambda_0(self) -> float:
        return self.E * self.nu / ((1.0 + self.nu) * (1.0 - 2.0 * self.nu))

    @classmethod
    def from_config(cls, cfg: MPMConfig) -> MPMPhysics:
        """Constants of ``cfg.scene`` from the ``mpm`` section."""
        sc = cfg.scene_config
        return cls(
            n_grid=sc.n_grid,
            dt=sc.dt,
            E=sc.E,
            nu=sc.nu,
            gravity=tuple(sc.gravity),
            density=tuple(sc.density),
            particle_size=sc.particle_size,
            hardening=cfg.hardening,
            h_min=cfg.h_min,
            h_max=cfg.h_max,
            jelly_h=cfg.jelly_h,
            snow_clamp=tuple(cfg.snow_clamp),
            wall_cells=cfg.wall_cells,
        )


def kernel_params(physics: MPMPhysics) -> K.MPMParams:
    """The kernels' constants of ``physics`` (``inv_dx = n_grid``, ``p_mass[material] = density[material] V_p``)."""
    wp = init_warp()
    from fieldlab.mpm import kernels as K

    prm = K.MPMParams()
    prm.n_grid, prm.dx, prm.inv_dx, prm.dt = physics.n_grid, physics.dx, float(physics.n_grid), physics.dt
    prm.p_vol, prm.mu_0, prm.lambda_0 = physics.p_vol, physics.mu_0, physics.lambda_0
    prm.hardening, prm.h_min, prm.h_max, prm.jelly_h = physics.hardening, physics.h_min, physics.h_max, physics.jelly_h
    prm.sig_lo, prm.sig_hi = physics.snow_clamp
    prm.gravity = wp.vec2(*physics.gravity)
    prm.wall_cells = physics.wall_cells
    prm.p_mass = wp.vec3(*(d * physics.p_vol for d in physics.density))
    return prm


class MPMSimulator:
    """Particles and grid of one simulation on a Warp device.

    Parameters
    ----------
    physics
        Constants (:class:`MPMPhysics`).
    particles
        Initial positions, velocities and materials; ``F = I``, ``C = 0``, ``Jp = 1`` unless ``F``/``C`` given.
    device
        ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
    threads
        CPU particle chunks run concurrently (ignored on CUDA, which uses one chunk and real atomics).
    F, C
        Optional initial deformation gradients and affine velocities, ``(N, 2, 2)``.

    Notes
    -----
    The constructor performs the first P2G (Taichi's first substep up to the grid update), so :meth:`state`
    returns ``F``, ``Jp`` and the Kirchhoff stress ``S`` consistent with the initial positions.
    """

    def __init__(
        self,
        physics: MPMPhysics,
        particles: ParticleSet,
        device: str = "cpu",
        threads: int = 1,
        F: np.ndarray | None = None,
        C: np.ndarray | None = None,
    ) -> None:
        self._wp = init_warp()
        self.physics = physics
        self.device = resolve_device(device)
        n, N = physics.n_grid, particles.n
        self.n_particles = N
        self.threads = 1 if self.device != "cpu" else max(1, min(int(threads), N, n))
        self.time = 0.0
        self.substeps_done = 0
        self._check_inside(particles.x, "initial")

        prm = kernel_params(physics)
        self._masses = np.asarray(physics.density, dtype=np.float32)[particles.material] * np.float32(physics.p_vol)
        self._allocate(particles, F, C)
        arr = self._arrays
        # the particle arrays, the per-thread grid slices and the constants: the tail of both particle kernels' inputs
        pargs = [arr["x"], arr["v"], arr["C"], arr["F"], arr["Jp"], arr["S"], arr["material"], self._grid_p, prm]
        chunks = np.linspace(0, N, self.threads + 1).astype(int)  # particle ranges
        rows = np.linspace(0, n, self.threads + 1).astype(int)  # grid row ranges
        self._initial_p2g(pargs, chunks)
        self._launches = self._record_substep(prm, pargs, chunks, rows)

    def _allocate(self, particles: ParticleSet, F: np.ndarray | None, C: np.ndarray | None) -> None:
        """Particle arrays on the device (``F = I``, ``C = 0``, ``Jp = 1``, ``S = 0`` unless given) and the grids."""
        wp, dev, N, n = self._wp, self.device, self.n_particles, self.physics.n_grid
        eye = np.broadcast_to(np.eye(2, dtype=np.float32), (N, 2, 2))
        self._arrays = {
            "x": wp.array(particles.x, dtype=wp.vec2, device=dev),
            "v": wp.array(particles.v, dtype=wp.vec2, device=dev),
            "C": wp.array(
                np.zeros((N, 2, 2), np.float32) if C is None else C.astype(np.float32), dtype=wp.mat22, device=dev
            ),
            "F": wp.array(eye if F is None else F.astype(np.float32), dtype=wp.mat22, device=dev),
            "Jp": wp.ones(N, dtype=float, device=dev),
            "S": wp.zeros(N, dtype=wp.mat22, device=dev),
            "material": wp.array(particles.material, dtype=wp.int32, device=dev),
        }
        self._grid_p = wp.zeros((self.threads, n, n), dtype=wp.vec3, device=dev)  # momentum (2) and mass per slice
        self._grid_v = wp.zeros((n, n), dtype=wp.vec2, device=dev)
        self._grid_m = wp.zeros((n, n), dtype=float, device=dev)

    def _initial_p2g(self, pargs: list, chunks: np.ndarray) -> None:
        """The first P2G, chunk by chunk into each chunk's grid slice (Taichi's first substep up to the grid update)."""
        from fieldlab.mpm import kernels as K

        for k in range(self.threads):
            lo, hi = int(chunks[k]), int(chunks[k + 1])
            self._wp.launch(K.p2g_initial, dim=hi - lo, inputs=[lo, k, *pargs], device=self.device)

    def _record_substep(self, prm: K.MPMParams, pargs: list, chunks: np.ndarray, rows: np.ndarray) -> list[tuple]:
        """Per thread k, one substep's recorded launches: ``grid_update`` of rows k, then ``g2p_p2g`` of chunk k."""
        from fieldlab.mpm import kernels as K

        wp, dev, n = self._wp, self.device, self.physics.n_grid
        return [
            (
                wp.launch(
                    K.grid_update,
                    dim=int(rows[k + 1] - rows[k]) * n,
                    inputs=[int(rows[k]) * n, self.threads, self._grid_p, self._grid_v, self._grid_m, prm],
                    device=dev,
                    record_cmd=True,
                ),
                wp.launch(
                    K.g2p_p2g,
                    dim=int(chunks[k + 1] - chunks[k]),
                    inputs=[int(chunks[k]), k, self._grid_v, *pargs],
                    device=dev,
                    record_cmd=True,
                ),
            )
            for k in range(self.threads)
        ]

    # ------------------------------------------------------------------------------------------------------------
    def advance(self, substeps: int) -> None:
        """Run ``substeps`` substeps; raise :class:`PhysicsError` if a particle leaves the grid or turns non-finite."""
        if substeps < 0:
            raise ConfigError(f"substeps = {substeps}: expected an integer >= 0")
        if self.threads == 1:
            grid, particles = self._launches[0]
            for _ in range(substeps):
                grid.launch()
                particles.launch()
        else:
            self._advance_threaded(substeps)
        self.substeps_done += substeps
        self.time = self.substeps_done * self.physics.dt
        self._wp.synchronize_device(self.device)
        self._check_inside(self._arrays["x"].numpy(), f"after substep {self.substeps_done}")

    def _advance_threaded(self, substeps: int) -> None:
        """Each thread k runs grid rows k and particle chunk k; barriers separate the two phases."""
        barrier = threading.Barrier(self.threads)
        errors: list[BaseException] = []

        def work(k: int) -> None:
            grid, particles = self._launches[k]
            try:
                for _ in range(substeps):
                    grid.launch()
                    barrier.wait()
                    particles.launch()
                    barrier.wait()
            except threading.BrokenBarrierError:
                pass
            except BaseException as exc:  # re-raised in the caller's thread below
                errors.append(exc)
                barrier.abort()

        workers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(1, self.threads)]
        for t in workers:
            t.start()
        work(0)
        for t in workers:
            t.join()
        if errors:
            raise errors[0]

    def _check_inside(self, x: np.ndarray, when: str) -> None:
        """Every particle must keep its 3 x 3 stencil on the grid: ``0.5 dx <= x < 1 - 1.5 dx`` (and be finite)."""
        dx = self.physics.dx
        ok = np.isfinite(x).all() and x.min() >= 0.5 * dx and x.max() < 1.0 - 1.5 * dx
        if not ok:
            bad = int(np.count_nonzero(~(np.isfinite(x) & (x >= 0.5 * dx) & (x < 1.0 - 1.5 * dx)).all(axis=1)))
            raise PhysicsError(
                f"mpm: {bad} particle(s) outside the grid or non-finite {when} (t = {self.time:.6g} s); "
                "expected positions in [0.5 dx, 1 - 1.5 dx] (reduce dt, keep walls on, or slow the scene)"
            )

    # ------------------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Copies of the particle fields: x, v (N, 2); F, C, S (N, 2, 2); Jp (N,); material (N,)."""
        return {name: np.array(a.numpy(), copy=True) for name, a in self._arrays.items()}

    @property
    def mass(self) -> np.ndarray:
        """Particle masses ``m_p = density[material] V_p``, (N,)."""
        return self._masses.copy()

    def grid_mass(self) -> np.ndarray:
        """Node masses ``m_i = sum_p w_ip m_p`` of the last grid update, (n_grid, n_grid)."""
        return np.array(self._grid_m.numpy(), copy=True)
