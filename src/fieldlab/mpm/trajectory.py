"""Recorded MPM trajectories and :func:`simulate`, the function API from an ``mpm`` config to numpy arrays."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fieldlab.config import MPMConfig, to_dict
from fieldlab.errors import InputError
from fieldlab.mpm.engine import cpu_threads
from fieldlab.mpm.scenes import MATERIAL_NAMES, build_scene
from fieldlab.mpm.simulator import MPMPhysics, MPMSimulator

#: per-frame particle fields: name -> trailing shape after (T, N)
FIELD_SHAPES: dict[str, tuple[int, ...]] = {
    "x": (2,),
    "v": (2,),
    "F": (2, 2),
    "Jp": (),
    "S": (2, 2),
    "C": (2, 2),
}

#: the stored stress measure (``S``)
STRESS_MEASURE = "kirchhoff"
STRESS_DOC = "Kirchhoff stress tau = 2 mu (F - R) F^T + lambda J (J - 1) I (fixed corotated; Cauchy = tau / J)"


@dataclass
class MPMTrajectory:
    """Particle fields of T stored frames of N particles.

    Attributes
    ----------
    x, v : (T, N, 2) float32
        Positions (unit square) and velocities.
    F, S, C : (T, N, 2, 2) float32
        Elastic deformation gradient, Kirchhoff stress (not multiplied by dt) and APIC affine velocity.
    Jp : (T, N) float32
        Plastic volume ratio (1 for liquid and jelly).
    t : (T,) float32
        Time of each frame in seconds (frame 0 is the initial state).
    material : (N,) int32
        0 liquid, 1 jelly, 2 snow.
    particle_id : (N,) int64
        Identity of each particle (its index in the initial scene).
    meta : dict
        The manifest: parameters, seed, engine, versions, stress measure, shapes.
    """

    x: np.ndarray
    v: np.ndarray
    F: np.ndarray
    Jp: np.ndarray
    S: np.ndarray
    C: np.ndarray
    t: np.ndarray
    material: np.ndarray
    particle_id: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.ndim != 3:
            raise InputError(f"trajectory: x has shape {self.x.shape}, expected (T, N, 2)")
        T, N = self.x.shape[:2]
        for name, tail in FIELD_SHAPES.items():
            a = getattr(self, name)
            if a.shape != (T, N, *tail):
                raise InputError(f"trajectory: {name} has shape {a.shape}, expected {(T, N, *tail)}")
            if a.dtype != np.float32:
                raise InputError(f"trajectory: {name} has dtype {a.dtype}, expected float32")
        for name, shape in (("t", (T,)), ("material", (N,)), ("particle_id", (N,))):
            a = getattr(self, name)
            if a.shape != shape:
                raise InputError(f"trajectory: {name} has shape {a.shape}, expected {shape}")
        if not np.issubdtype(self.material.dtype, np.integer) or not np.issubdtype(self.particle_id.dtype, np.integer):
            raise InputError("trajectory: material and particle_id must be integer arrays")

    @property
    def n_frames(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_particles(self) -> int:
        return int(self.x.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by name (the contents of ``trajectory.npz``)."""
        return {name: getattr(self, name) for name in (*FIELD_SHAPES, "t", "material", "particle_id")}


def _versions() -> dict[str, str]:
    import warp as wp

    from fieldlab import __version__ as fieldlab_version

    return {
        "fieldlab": fieldlab_version,
        "warp": wp.config.version,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def simulate(cfg: MPMConfig, seed: int = 0, progress: bool = False) -> MPMTrajectory:
    """Simulate ``cfg.scene`` and record ``cfg.frames`` frames, one every ``substeps`` substeps.

    Parameters
    ----------
    cfg
        The ``mpm`` section (scene, per-scene constants, material laws, engine).
    seed
        Seed of the initial particles (positions; disc velocities).
    progress
        Show a tqdm bar over frames.

    Returns
    -------
    MPMTrajectory
        Frame ``k`` is the state at ``t_k = k * substeps * dt`` (frame 0: the initial state).
    """
    sc = cfg.scene_config
    physics = MPMPhysics.from_config(cfg)
    particles = build_scene(cfg.scene, sc.particles, sc.max_speed, seed)
    threads = cpu_threads(cfg.threads)
    sim = MPMSimulator(physics, particles, device=cfg.device, threads=threads)
    T, N = cfg.frames, particles.n
    out = {name: np.empty((T, N, *tail), np.float32) for name, tail in FIELD_SHAPES.items()}
    t = np.empty(T, np.float32)

    def record(k: int) -> None:
        st = sim.state()
        for name in FIELD_SHAPES:
            out[name][k] = st[name]
        t[k] = sim.time

    from tqdm.auto import tqdm

    start = time.perf_counter()
    record(0)
    for k in tqdm(range(1, T), desc=f"mpm {cfg.scene}", unit="frame", disable=not progress):
        sim.advance(sc.substeps)
        record(k)
    seconds = time.perf_counter() - start
    meta = {
        "scene": cfg.scene,
        "seed": seed,
        "engine": "warp",
        "device": sim.device,
        "threads": sim.threads,
        "versions": _versions(),
        "params": to_dict(cfg),
        "derived": {
            "dx": physics.dx,
            "p_vol": physics.p_vol,
            "mu_0": physics.mu_0,
            "lambda_0": physics.lambda_0,
            "particle_mass": [d * physics.p_vol for d in physics.density],
            "frame_dt": sc.substeps * physics.dt,
        },
        "stress_measure": STRESS_MEASURE,
        "stress": STRESS_DOC,
        "materials": dict(enumerate(MATERIAL_NAMES)),
        "shapes": {name: [T, N, *tail] for name, tail in FIELD_SHAPES.items()}
        | {"t": [T], "material": [N], "particle_id": [N]},
        "frame_time": "t_k = k * substeps * dt; frame 0 is the initial state (after the first plasticity return)",
        "simulation_seconds": round(seconds, 3),
        "particle_substeps_per_second": N * sc.substeps * (T - 1) / seconds if seconds > 0 and T > 1 else None,
    }
    return MPMTrajectory(
        **out,
        t=t,
        material=particles.material.copy(),
        particle_id=np.arange(N, dtype=np.int64),
        meta=meta,
    )
