"""3D UNet: the convolutional baseline backbone (encoder/decoder with skips, GroupNorm, any grid size).

References
----------
Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015;
Cicek et al., "3D U-Net", MICCAI 2016.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fieldlab.errors import ConfigError

Modulate = Callable[[torch.Tensor], torch.Tensor]


class ConvBlock(nn.Sequential):
    """``gelu(GN(conv3(gelu(GN(conv3(x))))))`` with 3x3x3 kernels and zero padding (size-preserving)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, 3, padding=1),
            nn.GroupNorm(groups, out_channels),
            nn.GELU(),
            nn.Conv3d(out_channels, out_channels, 3, padding=1),
            nn.GroupNorm(groups, out_channels),
            nn.GELU(),
        )


class UNet3d(nn.Module):
    """Encoder/decoder with skip connections; channels ``base * 2**k`` at level ``k = 0 .. depth-1``.

    Down: ``e_0 = B_0(x)``, ``e_k = B_k(maxpool2(e_{k-1}))``. Up: ``d_{k} = B'_k([e_k, upconv2(d_{k+1})])`` with
    ``d_{depth-1} = e_{depth-1}`` (the bottleneck, where ``modulate`` applies the FiLM of the spacing conditioner).
    Output ``y = conv1(d_0)``. Grids that are not multiples of ``2**(depth-1)`` are zero-padded at the high end of
    each axis and cropped back.

    Its 3x3x3 voxel kernels are not resolution-invariant: on a finer grid they see a smaller physical
    neighbourhood. Compare native application with
    :meth:`fieldlab.potential.models.wrapper.PotentialModel.predict_restricted`.

    Examples
    --------
    >>> net = UNet3d(4, 1, base=4, depth=3, groups=2)
    >>> net(torch.rand(1, 4, 9, 6, 7)).shape
    torch.Size([1, 1, 9, 6, 7])
    """

    def __init__(self, in_channels: int, out_channels: int, base: int, depth: int, groups: int) -> None:
        super().__init__()
        if base % groups:
            raise ConfigError(f"model.unet.groups = {groups}: expected a divisor of model.unet.base = {base}")
        chans = [base * 2**k for k in range(depth)]
        self.depth = depth
        self.latent_channels = chans[-1]
        self.down = nn.ModuleList(
            ConvBlock(c_in, c_out, groups) for c_in, c_out in zip([in_channels, *chans[:-1]], chans, strict=True)
        )
        self.up = nn.ModuleList(nn.ConvTranspose3d(chans[k + 1], chans[k], 2, stride=2) for k in range(depth - 1))
        self.merge = nn.ModuleList(ConvBlock(2 * chans[k], chans[k], groups) for k in range(depth - 1))
        self.head = nn.Conv3d(chans[0], out_channels, 1)

    def forward(self, x: torch.Tensor, modulate: Modulate | None = None) -> torch.Tensor:
        """``(B, C_in, D, H, W) -> (B, C_out, D, H, W)`` for any D, H, W >= 1."""
        return self.head(self.features(x, modulate))

    def features(self, x: torch.Tensor, modulate: Modulate | None = None) -> torch.Tensor:
        """The last decoder level's ``base`` channels, the input of the 1x1x1 ``head``, ``(B, base, D, H, W)``."""
        d, h, w = x.shape[-3:]
        m = 2 ** (self.depth - 1)
        pad = [(-n) % m for n in (d, h, w)]
        x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))  # high end of W, H, D up to a multiple of m
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool3d(x, 2))
            skips.append(x)
        if modulate is not None:
            x = modulate(x)
        for k in reversed(range(self.depth - 1)):
            x = self.merge[k](torch.cat([skips[k], self.up[k](x)], dim=1))
        return x[..., :d, :h, :w]
