"""Geometry encoder: the conductivity tensor (S/m) -> a feature volume aligned with the grid.

Scaling of the input
--------------------
The six tensor channels ``(xx, yy, zz, xy, xz, yz)`` span two decades (bone 0.01 S/m, muscle 1.2 S/m) and are
exactly zero in air. :func:`conductivity_features` turns them into seven order-one channels per voxel::

    a      = 1[sigma_xx + sigma_yy + sigma_zz == 0]                   (air indicator)
    l_ii   = (1 - a) * log(sigma_ii / sigma_ref),        i in x, y, z  (log-conductivity, 0 in air)
    r_ij   = (1 - a) * sigma_ij / sqrt(sigma_ii sigma_jj),  ij in xy, xz, yz  (correlations, in [-1, 1])

so air never enters a logarithm and the network sees it as a separate indicator instead of ``log 0``.

Zero-shot design
----------------
A 3x3x3 voxel kernel covers half the physical extent on a 2x grid, so a convolutional encoder means something
different at each resolution. The default ``kind="pointwise"`` encoder is a per-voxel MLP (1x1x1 convolutions):
its output at a point depends only on sigma at that point, which is the same function at any spacing. The
``kind="conv"`` encoder (3x3x3 voxel kernels in the first layer) is kept as the non-invariant reference, to measure
what the choice costs at 2x (``bench/encoder_2x.py``).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from fieldlab.config import EncoderConfig
from fieldlab.errors import InputError
from fieldlab.potential.models.pointwise import Pointwise

#: Number of channels produced by :func:`conductivity_features`.
N_FEATURES = 7
#: S/m; diagonal conductivities are floored here inside tissue (far below any tissue, far above float32 underflow).
_SIGMA_FLOOR = 1e-12


def conductivity_features(sigma: torch.Tensor, sigma_ref: float) -> torch.Tensor:
    """Order-one, air-aware features of a conductivity tensor field.

    Parameters
    ----------
    sigma : torch.Tensor
        ``(B, 6, D, H, W)`` conductivity in S/m, channels ``(xx, yy, zz, xy, xz, yz)``, exactly 0 in air.
    sigma_ref : float
        Reference conductivity in S/m of the logarithm ``log(sigma_ii / sigma_ref)``.

    Returns
    -------
    torch.Tensor
        ``(B, 7, D, H, W)``: air indicator ``a``, ``l_xx, l_yy, l_zz`` and ``r_xy, r_xz, r_yz`` (module docstring).

    Examples
    --------
    >>> s = torch.zeros(1, 6, 1, 1, 2)
    >>> s[0, :3, 0, 0, 1] = 0.1  # isotropic 0.1 S/m in the second voxel, air in the first
    >>> conductivity_features(s, 0.1)[0, :4, 0, 0].tolist()
    [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    """
    if sigma.ndim != 5 or sigma.shape[1] != 6:
        raise InputError(f"sigma has shape {tuple(sigma.shape)}: expected (B, 6, D, H, W) in S/m")
    diag = sigma[:, :3]  # (B, 3, D, H, W): xx, yy, zz
    air = (diag.sum(dim=1, keepdim=True) == 0).to(sigma.dtype)  # (B, 1, D, H, W)
    tissue = 1.0 - air
    # 1 in air (and a floor elsewhere) keeps log, sqrt and the division finite, values and gradients alike; the air
    # values are multiplied by 0 afterwards. torch.where, not a product, so no 0 * inf = nan reaches the gradient.
    safe = torch.where(air.bool(), torch.ones_like(diag), diag.clamp_min(_SIGMA_FLOOR))
    log_diag = tissue * torch.log(safe / sigma_ref)
    sx, sy, sz = safe[:, 0:1], safe[:, 1:2], safe[:, 2:3]
    norm = torch.sqrt(torch.cat([sx * sy, sx * sz, sy * sz], dim=1))  # (B, 3, D, H, W) for xy, xz, yz
    corr = tissue * sigma[:, 3:] / norm
    return torch.cat([air, log_diag, corr], dim=1)


class GeometryEncoder(nn.Module):
    """Conductivity tensor -> ``channels`` features per voxel (pointwise MLP, or 3x3x3 first layer).

    ``h = W_L gelu(... gelu(W_1 x))`` with ``x = conductivity_features(sigma)`` and ``W_k`` 1x1x1 convolutions
    (``kind="pointwise"``); ``kind="conv"`` makes ``W_1`` a 3x3x3 convolution with zero padding.

    Parameters
    ----------
    cfg : EncoderConfig
        ``kind``, ``channels`` (output), ``hidden``, ``layers`` (number of convolutions), ``sigma_ref``.

    Examples
    --------
    >>> enc = GeometryEncoder(EncoderConfig(channels=5))
    >>> enc(torch.rand(2, 6, 4, 3, 3)).shape
    torch.Size([2, 5, 4, 3, 3])
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.sigma_ref = cfg.sigma_ref
        self.out_channels = cfg.channels
        sizes = [N_FEATURES] + [cfg.hidden] * (cfg.layers - 1) + [cfg.channels]
        layers: list[nn.Module] = []
        for k, (c_in, c_out) in enumerate(itertools.pairwise(sizes)):
            if k == 0 and cfg.kind == "conv":
                layers.append(nn.Conv3d(c_in, c_out, 3, padding=1))
            else:
                layers.append(Pointwise(c_in, c_out))
            if k < cfg.layers - 1:
                layers.append(nn.GELU())
        self.net = nn.Sequential(*layers)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        """``(B, 6, D, H, W)`` S/m -> ``(B, channels, D, H, W)``."""
        return self.net(conductivity_features(sigma, self.sigma_ref))
