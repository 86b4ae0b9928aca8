"""Effect of the geometry encoder's stencil on 1x -> 2x transfer, measured on fixed (untrained) models, as JSON.

A layered limb phantom (bone, anisotropic muscle, fat, skin, air) and a smooth source are sampled on the 1x grid
and on the 2x grid (the same box, half the spacing). For each encoder kind and backbone, one model with fixed
random weights (spacing conditioning off, so only the discretisation differs) is applied natively at both
resolutions, and the 2x output restricted to 1x (mean of each 2x2x2 block) is compared with the 1x output::

    rel_2x = || R(phi_2x) - phi_1x ||_2 / || phi_1x - mean(phi_1x) ||_2

The encoder features themselves are compared the same way (``features_rel_2x``); for the UNet the honest
baseline (``predict_restricted`` to the 1x grid) is reported too, with ``roundtrip_floor``: the same measure for
the 1x output itself interpolated to 2x and restricted back (the part of the difference due to the trilinear
round trip alone). ``conv0`` is the conv encoder with every 3x3x3
kernel made zero-sum (an edge/derivative detector, the kind of filter training produces): its response to a
smooth field scales with the spacing, which is what breaks the voxel-kernel encoder at 2x. Random weights only
probe the discretisation; the effect on trained weights is measured by the 2x evaluation of the trained models.
Run under the heavy lock::

    flock /tmp/fieldlab-heavy.lock python bench/encoder_2x.py --grid 48 24 24
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch
import torch.nn.functional as F

from fieldlab.config import ConditioningConfig, PriorConfig, load_config
from fieldlab.potential.models.wrapper import build_model

#: Tissue conductivities in S/m (diagonal xx, yy, zz), radii as fractions of the half-width of the box.
TISSUES = (  # (outer radius, sigma_xx, sigma_yy, sigma_zz), innermost first
    (0.15, 0.01, 0.01, 0.01),  # bone
    (0.60, 0.2455, 0.2455, 1.2275),  # muscle, 1:5 anisotropic along the limb axis z
    (0.70, 0.04, 0.04, 0.04),  # fat
    (0.75, 0.5, 0.5, 0.5),  # skin
)


def phantom(grid: tuple[int, int, int], half_width: float = 0.05) -> tuple[torch.Tensor, ...]:
    """sigma (1,6,D,H,W), f (1,1,D,H,W), coords (1,3,D,H,W), spacing (1,3) of a cylinder along z on [-1, 1]^3."""
    axes = [torch.linspace(-1 + 1 / n, 1 - 1 / n, n) for n in grid]  # cell centres along z, y, x
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    r = torch.sqrt(x**2 + y**2)
    sigma = torch.zeros(1, 6, *grid)
    for outer, *diag in reversed(TISSUES):
        inside = r < outer
        for c, value in enumerate(diag):
            sigma[0, c][inside] = value
    # a smooth dipole-like source in the muscle, resolved at both grids (width 0.15 of the half-width)
    blob = lambda x0: torch.exp(-((x - x0) ** 2 + y**2 + z**2) / (2 * 0.15**2))  # noqa: E731
    f = (blob(0.35) - blob(-0.35))[None, None]
    coords = torch.stack([x, y, z])[None]
    d, h, w = grid
    spacing = torch.tensor([[2 * half_width / w, 2 * half_width / h, 2 * half_width / d]])
    return sigma, f, coords, spacing


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative difference against the variation of the 1x field (its mean removed)."""
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b - b.mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--grid", type=int, nargs=3, default=[48, 24, 24])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    base = load_config(args.params).model
    # the analytic prior is exact at any resolution; this measures what the learnt part does at 2x
    base = dataclasses.replace(base, conditioning=ConditioningConfig(enabled=False), prior=PriorConfig(kind="none"))
    g1 = tuple(args.grid)
    g2 = tuple(2 * n for n in g1)
    x1, x2 = phantom(g1), phantom(g2)
    out: dict = {"grid_1x": g1, "grid_2x": g2, "seeds": args.seeds, "results": {}}
    with torch.no_grad():
        for kind in ("pointwise", "conv", "conv0"):
            enc = dataclasses.replace(base.encoder, kind="pointwise" if kind == "pointwise" else "conv")
            cfg = dataclasses.replace(base, encoder=enc)
            for backbone in ("fno", "unet"):
                rows: dict[str, list[float]] = {"features_rel_2x": [], "native_rel_2x": []}
                if backbone == "unet":
                    rows["restricted_rel_2x"] = []
                    rows["roundtrip_floor"] = []
                for seed in range(args.seeds):
                    torch.manual_seed(seed)
                    model = build_model(cfg, backbone).eval()
                    if kind == "conv0":
                        first = model.encoder.net[0].weight  # (O, I, 3, 3, 3)
                        first -= first.mean(dim=(2, 3, 4), keepdim=True)
                    e1, e2 = model.encoder(x1[0]), model.encoder(x2[0])
                    rows["features_rel_2x"].append(rel(F.avg_pool3d(e2, 2), e1))
                    phi1 = model(*x1)
                    rows["native_rel_2x"].append(rel(F.avg_pool3d(model(*x2), 2), phi1))
                    if backbone == "unet":
                        phi_r = model.predict_restricted(*x2, grid=g1)
                        rows["restricted_rel_2x"].append(rel(F.avg_pool3d(phi_r, 2), phi1))
                        up = F.interpolate(phi1, size=g2, mode="trilinear", align_corners=False)
                        rows["roundtrip_floor"].append(rel(F.avg_pool3d(up, 2), phi1))
                out["results"][f"{kind}/{backbone}"] = {k: sum(v) / len(v) for k, v in rows.items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
