"""Symmetries of the potential problem on the centred box, used as training augmentation.

If ``phi`` solves ``-div(sigma grad phi) = f`` with zero normal current, then for any orthogonal ``R`` that maps the
box onto itself, ``phi(R^T r)`` solves the problem with ``sigma' = R sigma R^T`` and ``f(R^T r)``, and by linearity
``-phi`` solves it with ``-f``. On a grid of cell centres centred on the origin this gives, exactly:

- a reflection of x, y or z: flip the W, H or D axis of every volume and negate the two off-diagonal channels
  that hold that axis (x: xy, xz; y: xy, yz; z: xz, yz);
- the swap x <-> y (when H = W and dx = dy): transpose H and W, exchange xx <-> yy and xz <-> yz, swap dx, dy;
- the sign: negate ``f``, ``phi`` and the prior.

Coordinates stay the fixed grid (the transformed sample is another phantom in the same box); masks move with the
volumes. 2^5 = 32 variants of every training sample for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: sigma channel indices (xx, yy, zz, xy, xz, yz)
XX, YY, ZZ, XY, XZ, YZ = range(6)
#: per reflected physical axis: the volume dimension flipped (of a (C, D, H, W) tensor) and channels negated
REFLECTIONS = {"x": (-1, (XY, XZ)), "y": (-2, (XY, YZ)), "z": (-3, (XZ, YZ))}
#: item keys that are volumes and follow the geometry; of those, the ones that change sign with the source
VOLUMES = ("sigma", "f", "phi", "mask", "tissue", "prior")
SIGNED = ("f", "phi", "prior")


@dataclass(frozen=True)
class Symmetry:
    """One element of the group: reflect x, y, z (in that order), then swap x and y, then flip the sign."""

    reflect_x: bool = False
    reflect_y: bool = False
    reflect_z: bool = False
    swap_xy: bool = False
    negate: bool = False

    @classmethod
    def random(cls, allow_swap: bool = True, generator: torch.Generator | None = None) -> Symmetry:
        """A uniformly drawn element (``swap_xy`` only when ``allow_swap``)."""
        bits = torch.randint(0, 2, (5,), generator=generator).tolist()
        return cls(*(bool(b) for b in bits[:3]), swap_xy=bool(bits[3]) and allow_swap, negate=bool(bits[4]))


def can_swap_xy(item: dict[str, torch.Tensor]) -> bool:
    """The x <-> y swap maps the box onto itself: equal H and W and equal dx and dy."""
    h, w = item["sigma"].shape[-2:]
    return h == w and bool(item["spacing"][0] == item["spacing"][1])


def apply_symmetry(item: dict[str, torch.Tensor], sym: Symmetry) -> dict[str, torch.Tensor]:
    """The item of the transformed sample (see the module docstring); keys other than volumes are kept."""
    out = dict(item)
    for axis, flag in (("x", sym.reflect_x), ("y", sym.reflect_y), ("z", sym.reflect_z)):
        if not flag:
            continue
        dim, channels = REFLECTIONS[axis]
        for key in VOLUMES:
            if key in out:
                out[key] = torch.flip(out[key], dims=(dim,))
        sigma = out["sigma"].clone()
        sigma[list(channels)] *= -1
        out["sigma"] = sigma
    if sym.swap_xy:
        if not can_swap_xy(out):
            raise ValueError("swap_xy needs H == W and dx == dy")
        for key in VOLUMES:
            if key in out:
                out[key] = out[key].transpose(-1, -2)
        out["sigma"] = out["sigma"][[YY, XX, ZZ, XY, YZ, XZ]]
        spacing = out["spacing"]
        out["spacing"] = spacing[[1, 0, 2]]
    if sym.negate:
        for key in SIGNED:
            if key in out:
                out[key] = -out[key]
    return {k: v.contiguous() for k, v in out.items()}
