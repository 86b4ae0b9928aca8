"""The sub-grid corrector: a 3D UNet on the training grid over the fine channels folded into depth.

``y = depth_to_space(UNet(gelu(L(space_to_depth(x, r)))), r)``: a ``(N, 9, D r, H r, W r)`` input (:mod:`.inputs`)
becomes ``9 r^3`` channels on the training grid, a pointwise lift ``L`` (1x1x1) maps them to ``base`` channels, the
UNet to ``r^3`` channels, and those unfold into one fine field, the correction to the coarse start in units of the
start's scale. The lift keeps the first 3x3x3 convolution off the 72 folded channels (a training step at
96x48x48, base 16: 0.78 s instead of 0.93 s on 2 cores). The head starts at zero, so an untrained corrector returns
the coarse start.
"""

from __future__ import annotations

import torch
from torch import nn

from fieldlab.potential.models.fold import depth_to_space, space_to_depth
from fieldlab.potential.models.unet import UNet3d

#: Fine channels per voxel the corrector reads (:func:`fieldlab.potential.data.subgrid_inputs.fine_channels`).
FINE_CHANNELS = 9


class SubgridCorrector(nn.Module):
    """Fine channels ``(N, 9, D r, H r, W r)`` -> correction ``(N, 1, D r, H r, W r)`` (module notes).

    Examples
    --------
    >>> net = SubgridCorrector(factor=2, base=4, depth=2, groups=2)
    >>> y = net(torch.rand(1, 9, 8, 4, 4))
    >>> y.shape, float(y.abs().max())  # the head starts at zero
    (torch.Size([1, 1, 8, 4, 4]), 0.0)
    """

    def __init__(self, factor: int = 2, base: int = 16, depth: int = 3, groups: int = 4) -> None:
        super().__init__()
        self.factor, self.base, self.depth, self.groups = int(factor), int(base), int(depth), int(groups)
        r3 = self.factor**3
        self.lift = nn.Conv3d(FINE_CHANNELS * r3, base, 1)
        self.net = UNet3d(base, r3, base, depth, groups)
        nn.init.zeros_(self.net.head.weight)
        nn.init.zeros_(self.net.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.folded(space_to_depth(x, self.factor))

    def folded(self, xf: torch.Tensor) -> torch.Tensor:
        """The correction from the fine channels already folded, ``(N, 9 r^3, D, H, W)``."""
        return depth_to_space(self.net(nn.functional.gelu(self.lift(xf))), self.factor)
