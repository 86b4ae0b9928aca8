"""The sub-grid corrector: a 3D UNet on the training grid over the fine channels folded into depth.

``y = depth_to_space(UNet(gelu(L(space_to_depth(x, r)))), r)``: a ``(N, 9, D r, H r, W r)`` input (:mod:`.inputs`)
becomes ``9 r^3`` channels on the training grid, a pointwise lift ``L`` (1x1x1) maps them to ``base`` channels, the
UNet to ``r^3`` channels, and those unfold into one fine field, the correction to the coarse start in units of the
start's scale. The lift keeps the first 3x3x3 convolution off the 72 folded channels (a training step at
96x48x48, base 16: 0.78 s instead of 0.93 s on 2 cores). The head starts at zero, so an untrained corrector returns
the coarse start.

Error head
----------
With ``error_head`` a second pointwise head (1x1x1, ``base -> base -> r^3``, GELU) reads the UNet's last features,
detached (its training moves no weight of the correction), and unfolds into the corrector's estimate of its own
error's magnitude, ``a = ERROR_UNIT softplus(h)`` (same units as the correction), trained on ``|c - t|`` of the
training limbs (:mod:`~fieldlab.potential.training.subgrid`). It costs two pointwise layers on the training grid,
so the estimate comes with the forward pass; its norm ranks the predictions (calibrated on validation limbs).
"""

from __future__ import annotations

import torch
from torch import nn

from fieldlab.potential.models.fold import depth_to_space, space_to_depth
from fieldlab.potential.models.unet import UNet3d

#: Fine channels per voxel the corrector reads (:func:`fieldlab.potential.data.subgrid_inputs.fine_channels`).
FINE_CHANNELS = 9
#: Scale of the error head's output (the corrector's errors are ~1 % of the start's scale at 2x).
ERROR_UNIT = 1e-2


class SubgridCorrector(nn.Module):
    """Fine channels ``(N, 9, D r, H r, W r)`` -> correction ``(N, 1, D r, H r, W r)`` (module notes).

    Examples
    --------
    >>> net = SubgridCorrector(factor=2, base=4, depth=2, groups=2)
    >>> y = net(torch.rand(1, 9, 8, 4, 4))
    >>> y.shape, float(y.abs().max())  # the head starts at zero
    (torch.Size([1, 1, 8, 4, 4]), 0.0)
    >>> c, a = SubgridCorrector(2, 4, 2, 2, error_head=True).with_error(space_to_depth(torch.rand(1, 9, 8, 4, 4), 2))
    >>> c.shape == a.shape, bool((a > 0).all())
    (True, True)
    """

    def __init__(self, factor: int = 2, base: int = 16, depth: int = 3, groups: int = 4, error_head: bool = False):
        super().__init__()
        self.factor, self.base, self.depth, self.groups = int(factor), int(base), int(depth), int(groups)
        self.error_head = bool(error_head)
        r3 = self.factor**3
        self.lift = nn.Conv3d(FINE_CHANNELS * r3, base, 1)
        self.net = UNet3d(base, r3, base, depth, groups)
        nn.init.zeros_(self.net.head.weight)
        nn.init.zeros_(self.net.head.bias)
        if self.error_head:
            self.err = nn.Sequential(nn.Conv3d(base, base, 1), nn.GELU(), nn.Conv3d(base, r3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.folded(space_to_depth(x, self.factor))

    def folded(self, xf: torch.Tensor) -> torch.Tensor:
        """The correction from the fine channels already folded, ``(N, 9 r^3, D, H, W)``."""
        return depth_to_space(self.net(nn.functional.gelu(self.lift(xf))), self.factor)

    def with_error(self, xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The correction and the error head's magnitude ``(N, 1, D r, H r, W r)`` each (module notes)."""
        if not self.error_head:
            raise ValueError("this corrector has no error head (subgrid.error_head: false when it was trained)")
        f = self.net.features(nn.functional.gelu(self.lift(xf)))
        c = depth_to_space(self.net.head(f), self.factor)
        a = depth_to_space(self.err(f.detach()), self.factor)
        return c, ERROR_UNIT * nn.functional.softplus(a.float())
