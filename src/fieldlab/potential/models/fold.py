"""Space-to-depth and depth-to-space in 3D: a fine grid folded into channels of a coarser one, and back.

A field on ``(D r, H r, W r)`` voxels becomes ``r^3`` channels on ``(D, H, W)``: channel ``c * r^3 + (a r + b) r + e``
of coarse voxel ``(i, j, k)`` holds channel ``c`` of fine voxel ``(i r + a, j r + b, k r + e)``. A network on the
coarse grid thus sees every fine value at the cost of a coarse forward pass. The two maps are exact inverses
(pure reshapes and transposes).
"""

from __future__ import annotations

import torch


def space_to_depth(x: torch.Tensor, r: int) -> torch.Tensor:
    """``(N, C, D r, H r, W r) -> (N, C r^3, D, H, W)``.

    Examples
    --------
    >>> x = torch.arange(8.0).reshape(1, 1, 2, 2, 2)
    >>> space_to_depth(x, 2).flatten().tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    """
    n, c, d, h, w = x.shape
    if d % r or h % r or w % r:
        raise ValueError(f"grid {(d, h, w)} is not a whole multiple of the fold factor {r}")
    x = x.reshape(n, c, d // r, r, h // r, r, w // r, r)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(n, c * r**3, d // r, h // r, w // r)


def depth_to_space(x: torch.Tensor, r: int) -> torch.Tensor:
    """``(N, C r^3, D, H, W) -> (N, C, D r, H r, W r)``, the inverse of :func:`space_to_depth`."""
    n, cr, d, h, w = x.shape
    if cr % r**3:
        raise ValueError(f"{cr} channels are not a multiple of r^3 = {r**3}")
    c = cr // r**3
    x = x.reshape(n, c, r, r, r, d, h, w)
    return x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(n, c, d * r, h * r, w * r)
