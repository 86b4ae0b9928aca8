"""Schema of the ``mpm`` section: the 2D MLS-MPM scenes and their recording."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fieldlab.config.core import spec
from fieldlab.errors import ConfigError


# ---- mpm: the MLS-MPM corpus ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MPMSceneConfig:
    """Grid, time step, elasticity, gravity, densities and recording cadence of one MPM scene.

    The domain is the unit square; ``dx = 1 / n_grid``; particle volume ``V_p = (particle_size dx)^2``;
    particle mass ``m_p = density[material] V_p``; Lame constants ``mu_0 = E / (2 (1 + nu))``,
    ``lambda_0 = E nu / ((1 + nu) (1 - 2 nu))``.
    """

    n_grid: int = spec(128, ge=8, doc="grid nodes per side of the unit square")
    dt: float = spec(1e-4, gt=0, doc="substep, s")
    E: float = spec(5e3, gt=0, doc="Young's modulus")
    nu: float = spec(0.2, ge=0, lt=0.5, doc="Poisson's ratio")
    gravity: tuple[float, float] = spec((0.0, -30.0), doc="m/s^2 (x, y)")
    density: tuple[float, float, float] = spec((1.0, 1.0, 1.0), gt=0, doc="liquid, jelly, snow")
    particle_size: float = spec(0.5, gt=0, doc="particle side in cells: V_p = (particle_size dx)^2")
    substeps: int = spec(20, ge=1, doc="substeps per stored frame")
    particles: int = spec(3000, ge=1, doc="particles per block (mpm128) or per disc (discs_3types)")
    max_speed: float = spec(2.0, ge=0, doc="discs_3types: initial disc velocity ~ U(-max_speed, max_speed)^2")


@dataclass(frozen=True)
class MPM128SceneConfig(MPMSceneConfig):
    """Taichi's mpm128: three 0.2 x 0.2 blocks (liquid, jelly, snow) falling into the box."""


@dataclass(frozen=True)
class DiscsSceneConfig(MPMSceneConfig):
    """discs_3types: nine discs of radius 0.075 on a 3 x 3 layout, three per material, random velocities."""

    dt: float = spec(7.5e-5, gt=0, doc="substep, s")
    E: float = spec(1e3, gt=0, doc="Young's modulus")
    gravity: tuple[float, float] = spec((0.0, -50.0), doc="m/s^2 (x, y)")
    density: tuple[float, float, float] = spec((1.0, 0.5, 0.25), gt=0, doc="liquid, jelly, snow")
    particles: int = spec(1000, ge=1, doc="particles per disc")


@dataclass(frozen=True)
class MPMConfig:
    """Scene, constants, engine and recording of the 2D MLS-MPM simulation (fieldlab.mpm.simulate)."""

    scene: Literal["mpm128", "discs_3types"] = "discs_3types"
    frames: int = spec(200, ge=1, doc="stored frames, the initial state included")
    root: str = "data/mpm"
    # material laws shared by the scenes (Taichi mpm128)
    hardening: float = spec(10.0, ge=0, doc="xi in h = exp(xi (1 - Jp))")
    h_min: float = spec(0.1, gt=0, doc="lower clamp of h")
    h_max: float = spec(5.0, gt=0, doc="upper clamp of h")
    jelly_h: float = spec(0.3, gt=0, doc="fixed hardening of jelly")
    snow_clamp: tuple[float, float] = spec((0.975, 1.0045), gt=0, doc="snow singular values [1 - theta_c, 1 + theta_s]")
    wall_cells: int = spec(3, ge=0, doc="wall band in nodes (0: no walls)")
    # engine
    device: str = spec("cpu", doc="Warp device: cpu, cuda, cuda:N or auto (cuda when present)")
    threads: int = spec(2, ge=0, doc="CPU threads (particle chunks with private grids); 0 = all cores")
    mpm128: MPM128SceneConfig = field(default_factory=MPM128SceneConfig)
    discs_3types: DiscsSceneConfig = field(default_factory=DiscsSceneConfig)

    def __post_init__(self) -> None:
        lo, hi = self.snow_clamp
        if not lo <= 1.0 <= hi:
            raise ConfigError(f"mpm.snow_clamp = {list(self.snow_clamp)!r}: expected [lo, hi] with lo <= 1 <= hi")
        if self.h_min > self.h_max:
            raise ConfigError(f"mpm.h_min = {self.h_min!r} > mpm.h_max = {self.h_max!r}: expected h_min <= h_max")

    @property
    def scene_config(self) -> MPMSceneConfig:
        """Constants of the selected scene."""
        return getattr(self, self.scene)
