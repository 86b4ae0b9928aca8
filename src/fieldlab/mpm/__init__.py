"""2D multi-material MLS-MPM simulation (NVIDIA Warp) producing per-particle x, v, F, Jp, S, C fields.

Public API: :func:`simulate` (``MPMConfig -> MPMTrajectory``), :func:`load_trajectory`, :func:`save_trajectory`,
:class:`MPMSimulator` and :class:`MPMPhysics` for custom scenes. Importing this package does not start Warp.
"""

from __future__ import annotations

from fieldlab.mpm.io import load_trajectory, save_trajectory
from fieldlab.mpm.scenes import ParticleSet, build_scene
from fieldlab.mpm.simulator import MPMPhysics, MPMSimulator
from fieldlab.mpm.trajectory import STRESS_MEASURE, MPMTrajectory, simulate

__all__ = [
    "STRESS_MEASURE",
    "MPMPhysics",
    "MPMSimulator",
    "MPMTrajectory",
    "ParticleSet",
    "build_scene",
    "load_trajectory",
    "save_trajectory",
    "simulate",
]
