"""Initial particles of the MPM scenes: Taichi's ``mpm128`` blocks and the nine-disc ``discs_3types``.

Material ids: 0 liquid, 1 jelly, 2 snow. Positions lie in the unit square, ``(N, 2)`` float32, ``x[:, 0]`` horizontal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fieldlab.core.seeding import numpy_rng
from fieldlab.errors import ConfigError, InputError

LIQUID, JELLY, SNOW = 0, 1, 2
MATERIAL_NAMES = ("liquid", "jelly", "snow")

#: discs_3types layout: centres on a 3 x 3 lattice, radius R (the study's scene)
DISC_X = (0.2, 0.45, 0.7)
DISC_Y = (0.375, 0.625, 0.875)
DISC_RADIUS = 0.075


@dataclass(frozen=True)
class ParticleSet:
    """Initial particles: positions ``x`` (N, 2), velocities ``v`` (N, 2), material ids (N,).

    Deformation gradients start at ``F = I``, affine velocities at ``C = 0`` and plastic volume ratios at ``Jp = 1``.
    """

    x: np.ndarray
    v: np.ndarray
    material: np.ndarray

    def __post_init__(self) -> None:
        n = self.x.shape[0] if self.x.ndim == 2 else -1
        if self.x.shape != (n, 2) or n < 1:
            raise InputError(f"particles: x has shape {self.x.shape}, expected (N, 2) with N >= 1")
        if self.v.shape != (n, 2):
            raise InputError(f"particles: v has shape {self.v.shape}, expected ({n}, 2)")
        if self.material.shape != (n,):
            raise InputError(f"particles: material has shape {self.material.shape}, expected ({n},)")
        if not np.isin(self.material, (LIQUID, JELLY, SNOW)).all():
            raise InputError("particles: material ids must be 0 (liquid), 1 (jelly) or 2 (snow)")
        if not (np.isfinite(self.x).all() and np.isfinite(self.v).all()):
            raise InputError("particles: x and v must be finite")
        object.__setattr__(self, "x", np.ascontiguousarray(self.x, dtype=np.float32))
        object.__setattr__(self, "v", np.ascontiguousarray(self.v, dtype=np.float32))
        object.__setattr__(self, "material", np.ascontiguousarray(self.material, dtype=np.int32))

    @property
    def n(self) -> int:
        """Number of particles."""
        return int(self.x.shape[0])


def mpm128_blocks(per_block: int, seed: int = 0) -> ParticleSet:
    """Taichi's mpm128 scene: block k (k = 0 liquid, 1 jelly, 2 snow) uniform in
    ``[0.3 + 0.1 k, 0.5 + 0.1 k] x [0.05 + 0.32 k, 0.25 + 0.32 k]``, at rest.

    Examples
    --------
    >>> p = mpm128_blocks(10)
    >>> p.x.shape, sorted(set(p.material.tolist()))
    ((30, 2), [0, 1, 2])
    """
    rng = numpy_rng(seed, 128)
    k = np.repeat(np.arange(3), per_block)
    u = rng.random((3 * per_block, 2))
    x = np.stack([u[:, 0] * 0.2 + 0.3 + 0.1 * k, u[:, 1] * 0.2 + 0.05 + 0.32 * k], axis=1)
    return ParticleSet(x=x, v=np.zeros_like(x), material=k)


def discs_3types(per_disc: int, max_speed: float, seed: int = 0) -> ParticleSet:
    """Nine discs of radius 0.075 centred on ``{0.2, 0.45, 0.7} x {0.375, 0.625, 0.875}``.

    Disc ``(row r, column c)`` has material ``(r + c) mod 3`` (a Latin square: every row and column holds one disc
    of each material). Points are uniform in each disc (``r = R sqrt(U)``, ``theta = 2 pi U``); each disc moves
    rigidly with a velocity drawn from ``U(-max_speed, max_speed)^2``.
    """
    rng = numpy_rng(seed, 9)
    xs, vs, mats = [], [], []
    for r, cy in enumerate(DISC_Y):
        for c, cx in enumerate(DISC_X):
            radius = DISC_RADIUS * np.sqrt(rng.random(per_disc))
            theta = 2.0 * np.pi * rng.random(per_disc)
            xs.append(np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1))
            vs.append(np.broadcast_to(rng.uniform(-max_speed, max_speed, size=2), (per_disc, 2)))
            mats.append(np.full(per_disc, (r + c) % 3))
    return ParticleSet(x=np.concatenate(xs), v=np.concatenate(vs), material=np.concatenate(mats))


def build_scene(name: str, particles: int, max_speed: float = 0.0, seed: int = 0) -> ParticleSet:
    """Initial particles of scene ``name`` (``mpm128`` or ``discs_3types``)."""
    if name == "mpm128":
        return mpm128_blocks(particles, seed)
    if name == "discs_3types":
        return discs_3types(particles, max_speed, seed)
    raise ConfigError(f"mpm.scene = {name!r}: expected one of 'mpm128', 'discs_3types'")
