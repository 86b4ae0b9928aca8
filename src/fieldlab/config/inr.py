"""Schema of the ``inr`` section: one implicit-neural-representation fit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fieldlab.config.core import spec


# ---- inr: one implicit-neural-representation fit ----------------------------------------------------------------
@dataclass(frozen=True)
class NGPConfig:
    """Hash-grid encoding (Instant-NGP) and its MLP, used when ``inr.model = ngp``."""

    levels: int = spec(16, ge=1, le=32)
    features: int = spec(2, ge=1, le=16, doc="features per level")
    log2_table_size: int = spec(19, ge=4, le=26, doc="T = 2**log2_table_size entries per hashed level")
    base_resolution: int = spec(16, ge=1)
    growth: float = spec(1.5, ge=1.0, le=4.0, doc="level l has resolution floor(base_resolution * growth**l)")
    mlp_width: int = spec(64, ge=1)
    mlp_layers: int = spec(2, ge=0, le=16, doc="hidden ReLU layers")
    table_lr_factor: float = spec(5.0, gt=0, le=1000, doc="hash-table learning rate = inr.lr * table_lr_factor")


@dataclass(frozen=True)
class PODConfig:
    """Truncated SVD (proper orthogonal decomposition), used when ``inr.model`` is ``pod`` or ``pod_residual``."""

    rank: int = spec(16, ge=1, le=4096, doc="modes kept (clipped to the matrix's smaller side)")
    target_r2: float = spec(0.0, ge=0, lt=1, doc="> 0: the smallest rank whose fitted R2 reaches it (rank caps it)")
    residual_model: Literal["ngp", "siren_txy"] = spec("ngp", doc="pod_residual: the INR fitted to the residual")


@dataclass(frozen=True)
class INRConfig:
    """One INR fit on one MPM field (the inr_block stage)."""

    model: Literal["siren_t", "siren_id", "siren_txy", "ngp", "pod", "pod_residual"] = "ngp"
    field_name: Literal["F", "Jp", "S", "C"] = "Jp"
    scene: str = "discs_3types"
    data_root: str = "data/mpm"
    n_training_frames: int = spec(48, ge=1)
    frame_start: int = spec(0, ge=0)
    hidden_features: int = spec(256, ge=1, le=8192)
    hidden_layers: int = spec(3, ge=1, le=16)
    omega: float = spec(30.0, gt=0, le=1000)
    learn_omega: bool = False
    omega_lr: float = spec(1e-4, gt=0, le=1)
    lr: float = spec(1e-3, gt=0, le=1)
    batch_size: int = spec(2, ge=1, doc="frames per step")
    total_steps: int = spec(1000, ge=1)
    grad_clip: float = spec(0.0, ge=0, doc="max gradient norm; 0 = off")
    t_period: float = spec(1.0, gt=0, doc="time input divided by this (larger = slower variation)")
    xy_period: float = spec(1.0, gt=0, doc="position/id input divided by this")
    device: str = "auto"
    heldout_every: int = spec(
        0, ge=2, off=0, doc="k >= 2: every k-th interior frame is held out of the fit and scored; 0 = off"
    )
    heldout_particles: float = spec(0.0, ge=0, lt=1, doc="fraction of particles held out of the fit (seeded draw)")
    ngp: NGPConfig = field(default_factory=NGPConfig)
    pod: PODConfig = field(default_factory=PODConfig)
