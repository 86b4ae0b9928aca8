"""Reference engine: Taichi's ``mpm128`` example (taichi 1.7.4), written as in the example with its constants
passed in, and the same initial particles as fieldlab's. Used by the cross-check test and the benchmark only.

The substep is the example's single kernel: clear the grid; P2G with ``F <- (I + dt C) F``, ``ti.svd``, plasticity and
fixed-corotated stress; grid normalisation, gravity and the walls ``i < 3`` / ``i > n - 3``; G2P and advection. The
mouse attractor of the example is left out (its strength is 0 without a mouse).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import taichi as ti

_INITIALISED: dict[str, int] = {}


def init_taichi(threads: int = 2, cache_dir: str | Path | None = None) -> None:
    """``ti.init`` on the CPU with ``threads`` threads and the offline cache in ``.taichi_cache`` (once per count)."""
    if _INITIALISED.get("threads") == threads:
        return
    cache = Path(cache_dir or os.environ.get("FIELDLAB_TAICHI_CACHE", Path.cwd() / ".taichi_cache")).resolve()
    ti.init(
        arch=ti.cpu,
        cpu_max_num_threads=threads,
        default_fp=ti.f32,
        offline_cache=True,
        offline_cache_file_path=str(cache),
        log_level=ti.WARN,
    )
    _INITIALISED["threads"] = threads


@ti.data_oriented
class TaichiMPM128:
    """Taichi's mpm128 on given particles (x, v, material as numpy) with explicit constants."""

    def __init__(
        self,
        x: np.ndarray,
        v: np.ndarray,
        material: np.ndarray,
        n_grid: int = 128,
        dt: float = 1e-4,
        E: float = 5e3,
        nu: float = 0.2,
        gravity: tuple[float, float] = (0.0, -30.0),
        rho: float = 1.0,
    ) -> None:
        n = x.shape[0]
        self.n_grid, self.dx, self.inv_dx, self.dt = n_grid, 1.0 / n_grid, float(n_grid), dt
        self.p_vol = (self.dx * 0.5) ** 2
        self.p_mass = self.p_vol * rho
        self.mu_0, self.lambda_0 = E / (2 * (1 + nu)), E * nu / ((1 + nu) * (1 - 2 * nu))
        self.gravity = ti.Vector(list(gravity))
        self.x = ti.Vector.field(2, dtype=float, shape=n)
        self.v = ti.Vector.field(2, dtype=float, shape=n)
        self.C = ti.Matrix.field(2, 2, dtype=float, shape=n)
        self.F = ti.Matrix.field(2, 2, dtype=float, shape=n)
        self.material = ti.field(dtype=int, shape=n)
        self.Jp = ti.field(dtype=float, shape=n)
        self.grid_v = ti.Vector.field(2, dtype=float, shape=(n_grid, n_grid))
        self.grid_m = ti.field(dtype=float, shape=(n_grid, n_grid))
        self.x.from_numpy(x.astype(np.float32))
        self.v.from_numpy(v.astype(np.float32))
        self.material.from_numpy(material.astype(np.int32))
        self.F.from_numpy(np.tile(np.eye(2, dtype=np.float32), (n, 1, 1)))
        self.C.from_numpy(np.zeros((n, 2, 2), np.float32))
        self.Jp.from_numpy(np.ones(n, np.float32))

    @ti.kernel
    def substep(self):
        n_grid, dx, inv_dx, dt = self.n_grid, self.dx, self.inv_dx, self.dt
        p_vol, p_mass, mu_0, lambda_0 = self.p_vol, self.p_mass, self.mu_0, self.lambda_0
        for i, j in self.grid_m:
            self.grid_v[i, j] = [0, 0]
            self.grid_m[i, j] = 0
        for p in self.x:  # P2G
            base = (self.x[p] * inv_dx - 0.5).cast(int)
            fx = self.x[p] * inv_dx - base.cast(float)
            w = [0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1) ** 2, 0.5 * (fx - 0.5) ** 2]
            self.F[p] = (ti.Matrix.identity(float, 2) + dt * self.C[p]) @ self.F[p]
            h = ti.max(0.1, ti.min(5, ti.exp(10 * (1.0 - self.Jp[p]))))
            if self.material[p] == 1:
                h = 0.3
            mu, la = mu_0 * h, lambda_0 * h
            if self.material[p] == 0:
                mu = 0.0
            U, sig, V = ti.svd(self.F[p])
            J = 1.0
            for d in ti.static(range(2)):
                new_sig = sig[d, d]
                if self.material[p] == 2:
                    new_sig = ti.min(ti.max(sig[d, d], 1 - 2.5e-2), 1 + 4.5e-3)
                self.Jp[p] *= sig[d, d] / new_sig
                sig[d, d] = new_sig
                J *= new_sig
            if self.material[p] == 0:
                self.F[p] = ti.Matrix.identity(float, 2) * ti.sqrt(J)
            elif self.material[p] == 2:
                self.F[p] = U @ sig @ V.transpose()
            stress = 2 * mu * (self.F[p] - U @ V.transpose()) @ self.F[p].transpose() + ti.Matrix.identity(
                float, 2
            ) * la * J * (J - 1)
            stress = (-dt * p_vol * 4 * inv_dx * inv_dx) * stress
            affine = stress + p_mass * self.C[p]
            for i, j in ti.static(ti.ndrange(3, 3)):
                offset = ti.Vector([i, j])
                dpos = (offset.cast(float) - fx) * dx
                weight = w[i][0] * w[j][1]
                self.grid_v[base + offset] += weight * (p_mass * self.v[p] + affine @ dpos)
                self.grid_m[base + offset] += weight * p_mass
        for i, j in self.grid_m:
            if self.grid_m[i, j] > 0:
                self.grid_v[i, j] = (1 / self.grid_m[i, j]) * self.grid_v[i, j]
                self.grid_v[i, j] += dt * self.gravity
                if i < 3 and self.grid_v[i, j][0] < 0:
                    self.grid_v[i, j][0] = 0
                if i > n_grid - 3 and self.grid_v[i, j][0] > 0:
                    self.grid_v[i, j][0] = 0
                if j < 3 and self.grid_v[i, j][1] < 0:
                    self.grid_v[i, j][1] = 0
                if j > n_grid - 3 and self.grid_v[i, j][1] > 0:
                    self.grid_v[i, j][1] = 0
        for p in self.x:  # G2P
            base = (self.x[p] * inv_dx - 0.5).cast(int)
            fx = self.x[p] * inv_dx - base.cast(float)
            w = [0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1.0) ** 2, 0.5 * (fx - 0.5) ** 2]
            new_v = ti.Vector.zero(float, 2)
            new_C = ti.Matrix.zero(float, 2, 2)
            for i, j in ti.static(ti.ndrange(3, 3)):
                dpos = ti.Vector([i, j]).cast(float) - fx
                g_v = self.grid_v[base + ti.Vector([i, j])]
                weight = w[i][0] * w[j][1]
                new_v += weight * g_v
                new_C += 4 * inv_dx * weight * g_v.outer_product(dpos)
            self.v[p], self.C[p] = new_v, new_C
            self.x[p] += dt * self.v[p]

    def advance(self, substeps: int) -> None:
        """Run ``substeps`` substeps and wait for them."""
        for _ in range(substeps):
            self.substep()
        ti.sync()

    def positions(self) -> np.ndarray:
        """Particle positions (N, 2)."""
        return self.x.to_numpy()
