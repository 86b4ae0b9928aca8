"""Loading a trained model: the operator's or the sub-grid corrector's checkpoint, rebuilt and checked.

The one place prediction, evaluation and the benches read a trained checkpoint: what defines the model's inputs
(its ``model`` section, field scaler, reference spacing, training grid; the corrector's fold and start tolerance) is
stored with it and checked here; where the run keeps its files comes from the run's configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fieldlab.config import Config, ModelConfig, config_from_dict
from fieldlab.core.checkpoint import load_checkpoint
from fieldlab.core.device import autocast_dtype
from fieldlab.errors import InputError
from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.models.subgrid import SubgridCorrector
from fieldlab.potential.models.wrapper import BACKBONES, build_model


def checkpoint_model_config(ckpt: dict[str, Any], path: str | Path) -> ModelConfig:
    """The ``model`` section a checkpoint was trained with (validated like params.yaml)."""
    return config_from_dict({"model": ckpt["model_config"]}, source=f"{path}: model_config").model


def load_trained(
    path: str | Path, device: torch.device, model_factory=None, backbone: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint (its own ``model`` section) and load its weights.

    ``backbone``, when given, is the one the caller asked for: a checkpoint of another backbone is an error, not
    a silent evaluation of the other model. Every problem is one :class:`InputError` naming ``path``.
    """
    ckpt = load_checkpoint(path, map_location="cpu")
    if backbone is not None and ckpt["backbone"] != backbone:
        raise InputError(
            f"{path}: checkpoint of backbone {ckpt['backbone']!r}; expected {backbone!r} (--backbone or model.backbone)"
        )
    if ckpt["backbone"] not in BACKBONES:
        raise InputError(f"{path}: backbone = {ckpt['backbone']!r}; expected one of {', '.join(BACKBONES)}")
    model_cfg = checkpoint_model_config(ckpt, path)
    if model_factory is None:
        model_factory = build_model
    model = model_factory(model_cfg, ckpt["backbone"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else exc.__class__.__name__
        raise InputError(
            f"{path}: weights do not fit the {ckpt['backbone']} model of its model_config ({first})"
        ) from None
    return model.to(device).eval(), ckpt


def evaluation_inputs(ckpt: dict[str, Any], path: str | Path) -> tuple[FieldScaler, list[float], tuple[int, ...]]:
    """The field scaler, reference spacing (m) and training grid a checkpoint was trained with, checked."""
    try:
        scaler = FieldScaler.from_dict(ckpt["transforms"])
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    ref, grid = ckpt.get("reference_spacing"), ckpt.get("grid")
    if not _numbers(ref, 3) or not all(math.isfinite(v) and v > 0 for v in ref):
        raise InputError(f"{path}: reference_spacing = {ref!r}; expected three positive lengths (dx, dy, dz) in m")
    if not _numbers(grid, 3) or not all(isinstance(v, int) and v >= 1 for v in grid):
        raise InputError(f"{path}: grid = {grid!r}; expected the training grid (D, H, W) as three positive integers")
    return scaler, [float(v) for v in ref], tuple(int(v) for v in grid)


def _numbers(value: Any, n: int) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == n
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def run_prior(trained: Any, cfg: Config) -> Any:
    """The checkpoint's prior settings (what defines its input: kind, spacing, core) with the cache root of the run
    (``model.prior.root``): where the files live comes from the run, never from the checkpoint."""
    return replace(trained, root=cfg.model.prior.root)


#: ``backbone`` of a sub-grid checkpoint (:func:`fieldlab.core.checkpoint.load_checkpoint`'s required keys).
BACKBONE = "subgrid"


@dataclass
class TrainedSubgrid:
    """A trained corrector with what defines its inputs (stored in its checkpoint, checked on load)."""

    model: SubgridCorrector
    grid: tuple[int, int, int]  # the training grid the fine channels fold onto
    start_tol: float
    sigma_ref: float
    epoch: int
    precision: str = "float32"  # of the forward pass (core.device.autocast_dtype): how it runs, not what it is
    estimate_scale: float | None = None  # the error head's calibration on the validation limbs (None: no head)

    def correction(self, xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The correction ``(N, 1, D r, H r, W r)`` float32 for the folded fine channels ``xf``
        (:meth:`SubgridCorrector.folded`) at :attr:`precision`, and the error head's magnitude (``None`` without
        one)."""
        dtype = autocast_dtype(self.precision, xf.device)
        with torch.no_grad(), torch.autocast(xf.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            if self.model.error_head:
                c, a = self.model.with_error(xf)
                return c.float(), a.float()
            return self.model.folded(xf).float(), None

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint dict (``fieldlab.core.checkpoint`` layout)."""
        m = self.model
        return {
            "model": m.state_dict(),
            "model_config": {
                "factor": m.factor,
                "base": m.base,
                "depth": m.depth,
                "groups": m.groups,
                "error_head": m.error_head,
            },
            "backbone": BACKBONE,
            "transforms": {
                "grid": list(self.grid),
                "start_tol": self.start_tol,
                "sigma_ref": self.sigma_ref,
                "estimate_scale": self.estimate_scale,
            },
            "epoch": int(self.epoch),
        }


def load_subgrid(path: str | Path, device: torch.device | str = "cpu", precision: str = "float32") -> TrainedSubgrid:
    """Read a sub-grid checkpoint, to run at ``precision`` (``subgrid.precision``); a missing file or one of another
    model is an :class:`InputError` naming it."""
    ckpt = load_checkpoint(path, map_location=device)
    if ckpt["backbone"] != BACKBONE:
        raise InputError(f"{path}: a {ckpt['backbone']!r} checkpoint; expected a sub-grid corrector ({BACKBONE!r})")
    try:
        mc, tr = ckpt["model_config"], ckpt["transforms"]
        head = bool(mc.get("error_head", False))  # a checkpoint from before the head has none
        model = SubgridCorrector(int(mc["factor"]), int(mc["base"]), int(mc["depth"]), int(mc["groups"]), head)
        model.load_state_dict(ckpt["model"])
        grid = tuple(int(n) for n in tr["grid"])
        scale = tr.get("estimate_scale")
        if head != (scale is not None):
            raise ValueError(f"error_head {head} with estimate_scale {scale}: expected a calibration with a head only")
        out = TrainedSubgrid(
            model,
            grid,
            float(tr["start_tol"]),
            float(tr["sigma_ref"]),
            int(ckpt["epoch"]),  # type: ignore[arg-type]
            estimate_scale=None if scale is None else float(scale),
        )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a complete sub-grid checkpoint ({exc.__class__.__name__}: {exc})") from None
    out.model.to(device).eval()
    out.precision = precision
    return out


def subgrid_checkpoint(cfg: Config) -> Path:
    """Where this run keeps the sub-grid corrector (``<subgrid.root>/checkpoints/best.pt``)."""
    return Path(cfg.subgrid.root) / "checkpoints" / "best.pt"


def seed_checkpoint(cfg: Config) -> Path:
    """The seed of the operator across spacings (``spacings.backbone``): its train stage's best checkpoint."""
    return Path(cfg.log.root) / cfg.spacings.backbone / "checkpoints" / "best.pt"
