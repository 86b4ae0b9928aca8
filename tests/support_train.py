"""Helpers of the training tests: tiny, schema-valid potential corpora and a tiny operator double.

The corpus is a homogeneous box: muscle inside a one-voxel fat shell (H, W faces), a Gaussian bipole source and
the regularised free-space bipole potential

    u(r) = A (1 / sqrt(|r - p+|^2 + a^2) - 1 / sqrt(|r - p-|^2 + a^2))

sampled at voxel centres. It is not a finite-element solution (the training code never assumes one); it is a
smooth field that a model can fit and that is the same function at 1x and 2x.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fieldlab.core.io import save_npz
from fieldlab.potential.schema import TISSUES, cell_centres

MUSCLE = (0.2455, 0.2455, 1.2275, 0.0, 0.0, 0.0)
FAT = (0.04, 0.04, 0.04, 0.0, 0.0, 0.0)
BASE_GRID = (8, 6, 6)
EXTENT = (0.06, 0.06, 0.08)  # (Lx, Ly, Lz) metres


def make_sample(
    rng: np.random.Generator, grid: tuple[int, int, int], factor: int = 1, zoom: float = 1.0
) -> dict[str, np.ndarray]:
    """One sample on ``grid * factor``; the same draws give the same physical fields at any ``factor``.

    ``zoom`` scales the box and the fields' lengths (a smaller limb on the same grid: spacing ``x zoom``).
    """
    d, h, w = (n * factor for n in grid)
    lx, ly, lz = (zoom * e for e in EXTENT)
    x = cell_centres(w, -lx / 2, lx / 2)
    y = cell_centres(h, -ly / 2, ly / 2)
    z = cell_centres(d, -lz / 2, lz / 2)
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    amp = rng.uniform(0.5, 2.0)
    p_plus = zoom * np.array([rng.uniform(-0.01, 0.01), rng.uniform(-0.01, 0.01), rng.uniform(-0.02, 0.0)])
    p_minus = p_plus + zoom * np.array([0.0, 0.0, 0.03])
    a, width = 0.01 * zoom, 0.008 * zoom

    def dist2(p: np.ndarray) -> np.ndarray:
        return (xx - p[0]) ** 2 + (yy - p[1]) ** 2 + (zz - p[2]) ** 2

    u = amp * 1e-3 * (1 / np.sqrt(dist2(p_plus) + a**2) - 1 / np.sqrt(dist2(p_minus) + a**2))
    source = amp * 1e4 * (np.exp(-dist2(p_plus) / width**2) - np.exp(-dist2(p_minus) / width**2))
    source -= source.mean()  # zero net current, as the solver requires (the box cuts the Gaussians' tails unevenly)
    tissue = np.full((d, h, w), TISSUES["muscle"], dtype=np.uint8)
    shell = factor  # one base voxel of fat on the H and W faces
    tissue[:, :shell, :] = tissue[:, -shell:, :] = TISSUES["fat"]
    tissue[:, :, :shell] = tissue[:, :, -shell:] = TISSUES["fat"]
    sigma = np.where((tissue == TISSUES["muscle"])[..., None], np.array(MUSCLE), np.array(FAT))
    index = np.array([np.unravel_index(fn(source), source.shape) for fn in (np.argmax, np.argmin)])
    points = np.array([[x[i[2]], y[i[1]], z[i[0]]] for i in index])
    return {
        "sigma": sigma.astype(np.float32),
        "source": source.astype(np.float32),
        "mask": np.ones((d, h, w), dtype=bool),
        "tissue": tissue,
        "u": u.astype(np.float32),
        "spacing": np.array([lx / w, ly / h, lz / d], dtype=np.float32),
        "source_point": points.astype(np.float32),
        "source_index": index.astype(np.int64),
    }


def write_corpus(root: Path, counts=(4, 2, 2), grid=BASE_GRID, seed: int = 0) -> Path:
    """``root/{train,val,test,test_2x}/NNNN.npz`` plus a manifest with per-sample solve seconds."""
    records = []
    for split, n in zip(("train", "val", "test"), counts, strict=True):
        for i in range(n):
            save_npz(root / split / f"{i:04d}.npz", **make_sample(np.random.default_rng([seed, len(split), i]), grid))
            records.append({"split": split, "file": f"{split}/{i:04d}.npz", "solver_seconds": 0.5})
            if split == "test":
                arrays = make_sample(np.random.default_rng([seed, len(split), i]), grid, factor=2)
                save_npz(root / "test_2x" / f"{i:04d}.npz", **arrays)
                records.append({"split": "test_2x", "file": f"test_2x/{i:04d}.npz", "solver_seconds": 4.0})
    manifest = {"source": "synthetic", "samples": records}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


class TinyOperator(nn.Module):
    """Pointwise MLP on (sigma, f, X, Y, Z): the interface of ``PotentialModel`` at a few hundred parameters."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(10, width, 1), nn.GELU(), nn.Conv3d(width, 1, 1))

    def forward(self, sigma, f, coords, spacing, prior=None):
        return self.net(torch.cat([sigma, f, coords], dim=1))

    def predict_coarse(self, sigma, f, coords, spacing, grid, prior=None):
        def down(t):
            return nn.functional.interpolate(t, size=tuple(grid), mode="trilinear", align_corners=False)

        return self.forward(down(sigma), down(f), down(coords), spacing)

    def predict_restricted(self, sigma, f, coords, spacing, grid, prior=None):
        out = self.predict_coarse(sigma, f, coords, spacing, grid)
        return nn.functional.interpolate(out, size=tuple(sigma.shape[-3:]), mode="trilinear", align_corners=False)


def tiny_factory(model_cfg, backbone):
    return TinyOperator()


def tiny_config(root: Path, tmp: Path, **train):
    """A Config on the tiny corpus: CPU, no progress bars, every cadence 1."""
    from fieldlab.config import config_from_dict

    t = {"epochs": 2, "batch_size": 2, "lr": 1e-2, "amp": False, "warmup_steps": 0}
    t.update(train)
    return config_from_dict(
        {
            "seed": 0,
            "device": "cpu",
            "data": {"root": str(root)},
            "train": t,
            "loss": {"singularity_radius": 1.0},
            "log": {"root": str(tmp / "experiments"), "norms_every": 1, "vis_every": 1, "progress": False},
            "eval": {"figures": 1, "rival_repeats": 1},
            "subgrid": {"enabled": False, "root": str(tmp / "experiments" / "subgrid")},
        }
    )
