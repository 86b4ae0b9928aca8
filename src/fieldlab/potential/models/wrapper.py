"""The operator model ``(sigma, f, X, Y, Z, spacing) -> phi``: encoder + backbone + spacing FiLM, and its registry.

Adding a backbone is one module exposing a builder ``(cfg, in_channels, out_channels) -> nn.Module`` whose
``forward(x, modulate=None)`` maps ``(B, C_in, D, H, W) -> (B, C_out, D, H, W)``, applies ``modulate`` to its
latent and has an attribute ``latent_channels``; plus one line in :data:`BACKBONES`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fieldlab.config import ModelConfig
from fieldlab.errors import ConfigError, InputError
from fieldlab.potential.models.conditioning import SpacingConditioner
from fieldlab.potential.models.fno import FNO3d
from fieldlab.potential.models.geometry import GeometryEncoder
from fieldlab.potential.models.unet import UNet3d

#: Channels of the source term ``f`` and of the coordinates ``(X, Y, Z)``.
F_CHANNELS = 1
COORD_CHANNELS = 3


def _build_fno(cfg: ModelConfig, in_channels: int, out_channels: int) -> nn.Module:
    c = cfg.fno
    return FNO3d(in_channels, out_channels, c.width, c.modes, c.layers, c.padding, c.lifting_ratio, c.projection_ratio)


def _build_unet(cfg: ModelConfig, in_channels: int, out_channels: int) -> nn.Module:
    c = cfg.unet
    return UNet3d(in_channels, out_channels, c.base, c.depth, c.groups)


#: backbone name -> builder ``(cfg, in_channels, out_channels) -> nn.Module``.
BACKBONES: dict[str, Callable[[ModelConfig, int, int], nn.Module]] = {
    "fno": _build_fno,
    "unet": _build_unet,
}


def count_parameters(module: nn.Module) -> int:
    """Number of real trainable numbers (a complex weight counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in module.parameters() if p.requires_grad)


class PotentialModel(nn.Module):
    """Scaled potential from conductivity, scaled source, coordinates and spacing.

    ``x = [E(sigma), f, X, Y, Z]`` (channels), ``phi = B(x; FiLM(spacing))`` with ``E`` the
    :class:`~fieldlab.potential.models.geometry.GeometryEncoder`, ``B`` the backbone of ``model.backbone`` and
    ``FiLM`` the :class:`~fieldlab.potential.models.conditioning.SpacingConditioner` acting on the backbone's
    latent.

    With ``model.prior.kind = free_space`` the analytic prior ``p`` (:mod:`fieldlab.potential.data.prior`, scaled
    like phi) is one more input channel, as ``asinh(p)`` (its pole peaks compressed), and the base of the output:
    ``phi = p + B([x, asinh(p)]; FiLM(spacing))``, so the backbone learns only the correction (boundaries, fat,
    bone), which is smooth in muscle.

    Parameters
    ----------
    cfg : ModelConfig
        The ``model`` section of params.yaml.
    backbone : str, optional
        Overrides ``cfg.backbone`` (a key of :data:`BACKBONES`).
    """

    def __init__(self, cfg: ModelConfig, backbone: str | None = None) -> None:
        super().__init__()
        name = cfg.backbone if backbone is None else backbone
        if name not in BACKBONES:
            raise ConfigError(f"model.backbone = {name!r}: expected one of {', '.join(sorted(BACKBONES))}")
        self.backbone_name = name
        self.encoder = GeometryEncoder(cfg.encoder)
        self.prior_kind = cfg.prior.kind
        self.use_prior = cfg.prior.kind != "none"
        in_channels = self.encoder.out_channels + F_CHANNELS + COORD_CHANNELS + int(self.use_prior)
        self.backbone = BACKBONES[name](cfg, in_channels, 1)
        c = cfg.conditioning
        self.conditioner = (
            SpacingConditioner(self.backbone.latent_channels, c.hidden, c.reference_spacing, c.anchored)
            if c.enabled
            else None
        )

    @staticmethod
    def check_inputs(sigma: torch.Tensor, f: torch.Tensor, coords: torch.Tensor, spacing: torch.Tensor) -> None:
        """Raise :class:`InputError` (one line) unless the shapes are (B,6,D,H,W), (B,1,D,H,W), (B,3,D,H,W), (B,3)."""
        if sigma.ndim != 5 or sigma.shape[1] != 6:
            raise InputError(f"sigma has shape {tuple(sigma.shape)}: expected (B, 6, D, H, W) in S/m")
        b, _, d, h, w = sigma.shape
        for name, t, c in (("f", f, F_CHANNELS), ("coords", coords, COORD_CHANNELS)):
            if tuple(t.shape) != (b, c, d, h, w):
                raise InputError(f"{name} has shape {tuple(t.shape)}: expected {(b, c, d, h, w)} to match sigma")
        if tuple(spacing.shape) != (b, 3):
            raise InputError(f"spacing has shape {tuple(spacing.shape)}: expected {(b, 3)} = (dx, dy, dz) in metres")
        if not bool((spacing > 0).all()):
            raise InputError(f"spacing = {spacing.tolist()}: expected positive (dx, dy, dz) in metres")

    def check_prior(self, sigma: torch.Tensor, prior: torch.Tensor | None) -> None:
        """Raise :class:`InputError` unless ``prior`` is given, shaped (B,1,D,H,W), exactly when the model uses one."""
        if not self.use_prior:
            if prior is not None:
                warnings.warn("PotentialModel.forward ignores prior (model.prior.kind = none)", stacklevel=3)
            return
        want = (sigma.shape[0], 1, *sigma.shape[-3:])
        if prior is None or tuple(prior.shape) != want:
            got = None if prior is None else tuple(prior.shape)
            raise InputError(f"prior has shape {got}: expected {want} (model.prior.kind = {self.prior_kind})")

    def forward(
        self,
        sigma: torch.Tensor,
        f: torch.Tensor,
        coords: torch.Tensor,
        spacing: torch.Tensor,
        prior: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """(B,6,D,H,W) S/m, (B,1,D,H,W) scaled source, (B,3,D,H,W) in [-1, 1], (B,3) m -> (B,1,D,H,W) scaled phi.

        ``prior`` (B,1,D,H,W), scaled like phi, is required when ``model.prior.kind`` is not ``none``.
        """
        if kwargs:
            warnings.warn(f"PotentialModel.forward ignores {sorted(kwargs)}", stacklevel=2)
        self.check_inputs(sigma, f, coords, spacing)
        self.check_prior(sigma, prior)
        parts = [self.encoder(sigma), f, coords]
        if self.use_prior:
            parts.append(torch.asinh(prior))
        x = torch.cat(parts, dim=1)  # (B, C_enc + 1 + 3 [+ 1], D, H, W)
        modulate = None if self.conditioner is None else partial(self.conditioner, spacing=spacing)
        out = self.backbone(x, modulate)
        return out + prior if self.use_prior else out

    def predict_restricted(
        self,
        sigma: torch.Tensor,
        f: torch.Tensor,
        coords: torch.Tensor,
        spacing: torch.Tensor,
        grid: tuple[int, int, int],
        prior: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Honest baseline on a grid other than the training grid: restrict the inputs, predict, interpolate back.

        The model runs on ``grid`` (:meth:`predict_coarse`) and its output is interpolated trilinearly back to the
        input grid. With a prior, the coarse correction ``phi' - prior'`` (``prior'`` the cell-mean restriction of
        the prior) is interpolated back and added to the full-resolution prior (the prior is analytic at any
        resolution).
        """
        shape = tuple(sigma.shape[-3:])
        coarse = self.predict_coarse(sigma, f, coords, spacing, grid, prior)
        if not self.use_prior:
            return F.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)
        correction = coarse - restrict_field(prior, coarse.shape[-3:])  # type: ignore[arg-type]
        return prior + F.interpolate(correction, size=shape, mode="trilinear", align_corners=False)

    def predict_coarse(
        self,
        sigma: torch.Tensor,
        f: torch.Tensor,
        coords: torch.Tensor,
        spacing: torch.Tensor,
        grid: tuple[int, int, int],
        prior: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The model's prediction on ``grid`` = (D', H', W') from inputs on another grid: ``(B, 1, D', H', W')``.

        The inputs are resampled to ``grid`` (:func:`restrict_field`): cell averages when every axis shrinks (the
        mean current density of each coarse cell, exact coarse cell centres for ``coords`` when the factor is an
        integer; trilinear otherwise). Conductivity is restricted air-aware, so that air never blends into tissue:
        with ``t`` the tissue fraction of a coarse cell, ``sigma' = mean(sigma) / t`` (the mean over its tissue)
        where ``t >= 1/2`` and ``sigma' = 0`` (air) otherwise. The spacing becomes ``(dx W/W', dy H/H', dz D/D')``
        and the prior (when the model has one) is resampled as the other fields.
        """
        self.check_inputs(sigma, f, coords, spacing)
        self.check_prior(sigma, prior)
        if len(grid) != 3 or min(grid) < 1:
            raise InputError(f"grid = {grid!r}: expected three positive integers (D, H, W)")
        shape = tuple(sigma.shape[-3:])
        grid = tuple(int(n) for n in grid)
        tissue = (sigma[:, :3].sum(dim=1, keepdim=True) != 0).to(sigma.dtype)  # (B, 1, D, H, W)
        t = restrict_field(tissue, grid)
        zero = torch.zeros((), dtype=sigma.dtype)
        sigma_r = torch.where(t >= 0.5, restrict_field(sigma, grid) / t.clamp_min(0.5), zero)
        ratio = torch.tensor([shape[2] / grid[2], shape[1] / grid[1], shape[0] / grid[0]], device=spacing.device)
        coarse = (sigma_r, restrict_field(f, grid), restrict_field(coords, grid), spacing * ratio)
        if not self.use_prior:
            return self(*coarse)
        return self(*coarse, prior=restrict_field(prior, grid))  # type: ignore[arg-type]


def restrict_field(t: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """``(B, C, D, H, W)`` resampled to ``size``: cell means when no axis grows, trilinear otherwise."""
    if all(n <= m for n, m in zip(size, t.shape[-3:], strict=True)):
        return F.adaptive_avg_pool3d(t, size)
    return F.interpolate(t, size=size, mode="trilinear", align_corners=False)


def build_model(cfg: ModelConfig, backbone: str | None = None) -> PotentialModel:
    """The :class:`PotentialModel` of ``cfg`` (``backbone`` overrides ``cfg.backbone``)."""
    return PotentialModel(cfg, backbone)
