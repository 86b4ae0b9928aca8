"""Pointwise (1x1x1) channel mixing of a volume: ``y[b, o, ...] = sum_i W[o, i] x[b, i, ...] + c[o]``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Pointwise(nn.Module):
    """A 1x1x1 convolution computed as one batched matrix product over the flattened grid.

    ``F.conv1d`` on ``(B, C, D*H*W)`` with a width-1 kernel is a plain GEMM, which is faster on CPU than
    ``nn.Conv3d(kernel_size=1)``. Initialised like ``nn.Conv3d`` (uniform in ``+-1/sqrt(in_channels)``).

    Examples
    --------
    >>> Pointwise(3, 5)(torch.rand(2, 3, 4, 4, 4)).shape
    torch.Size([2, 5, 4, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_channels)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, C_out, *S)``."""
        b, _, *spatial = x.shape
        y = F.conv1d(x.reshape(b, x.shape[1], -1), self.weight, self.bias)  # (B, C, D*H*W) -> (B, O, D*H*W)
        return y.reshape(b, -1, *spatial)
