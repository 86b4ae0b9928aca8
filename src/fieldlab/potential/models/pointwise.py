"""Pointwise (1x1x1) channel mixing of a volume: ``y[b, o, ...] = sum_i W[o, i] x[b, i, ...] + c[o]``."""

from __future__ import annotations

import math

import torch
from torch import nn


class Pointwise(nn.Module):
    """A 1x1x1 convolution computed as one batched matrix product over the flattened grid.

    Computed as ``baddbmm`` on ``(B, C, D*H*W)``: plain GEMMs forward and backward. On 2 CPU threads at
    16 x 128*64*64 this took 20 ms per forward+backward against 30 ms for ``F.conv1d`` with a width-1 kernel
    (oneDNN). Initialised like ``nn.Conv3d`` (uniform in ``+-1/sqrt(in_channels)``).

    Examples
    --------
    >>> Pointwise(3, 5)(torch.rand(2, 3, 4, 4, 4)).shape
    torch.Size([2, 5, 4, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_channels)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *S) -> (B, C_out, *S)``."""
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)  # (B, C, D*H*W)
        weight = self.weight.expand(b, -1, -1)  # (B, O, C); the gradient sums over B
        if self.bias is None:
            y = torch.bmm(weight, flat)
        else:
            y = torch.baddbmm(self.bias[None, :, None].expand(b, -1, 1), weight, flat)  # (B, O, D*H*W)
        return y.reshape(b, -1, *spatial)
