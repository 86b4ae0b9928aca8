"""Training augmentation is exact physics: every symmetry of an item equals the item built from the physically
transformed sample (tensor rotated as R sigma R^T, volumes moved, the FEM solved again, the prior recomputed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fieldlab.potential.data.loader import PotentialDataset
from fieldlab.potential.data.prior import voxel_points
from fieldlab.potential.data.symmetry import Symmetry, apply_symmetry, can_swap_xy
from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.physics.analytic import tensor
from fieldlab.potential.physics.fem.solver import solve_potential
from fieldlab.potential.schema import PotentialSample

SHAPE = (12, 8, 8)
SPACING = np.array([2e-3, 2e-3, 2e-3])
PAIRS = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]  # (xx, yy, zz, xy, xz, yz)


def solved_sample(sigma: np.ndarray, source: np.ndarray, mask: np.ndarray, poles: np.ndarray) -> PotentialSample:
    u, _ = solve_potential(sigma, source, tuple(SPACING), tol=1e-10)
    pts = voxel_points(SHAPE, SPACING)
    index = np.array([np.unravel_index(np.argmin(np.sum((pts - p) ** 2, -1)), SHAPE) for p in poles])
    tissue = np.where(mask, 3, 0).astype(np.uint8)
    return PotentialSample(sigma, source, mask, tissue, u, SPACING, poles, index)


def asymmetric_sample(rng: np.random.Generator) -> PotentialSample:
    """A tilted muscle tensor with random heterogeneity, a corner of air, and an off-centre Gaussian bipole."""
    base = tensor((0.25, 0.3, 1.2, 0.05, 0.1, -0.08))
    scale = rng.uniform(0.5, 1.5, SHAPE)
    mats = base * scale[..., None, None]
    sigma = np.stack([mats[..., i, j] for i, j in PAIRS], axis=-1)
    mask = np.ones(SHAPE, dtype=bool)
    mask[:3, :2, :] = False
    sigma[~mask] = 0.0
    pts = voxel_points(SHAPE, SPACING)
    poles = np.array([[1.6e-3, -1.3e-3, -4.7e-3], [-2.4e-3, 2.2e-3, 5.5e-3]])
    source = sum(
        s * 1e5 * np.exp(-np.sum((pts - p) ** 2, -1) / (2e-3) ** 2) for s, p in zip((1, -1), poles, strict=True)
    )
    source = np.where(mask, source, 0.0)
    source[mask] -= source[mask].mean()
    return solved_sample(sigma, source, mask, poles)


def transformed_sample(s: PotentialSample, sym: Symmetry) -> PotentialSample:
    """Independent implementation: R as a 3x3 matrix on (x, y, z), sigma' = R sigma R^T, volumes moved, re-solved."""
    R = np.diag([-1.0 if sym.reflect_x else 1.0, -1.0 if sym.reflect_y else 1.0, -1.0 if sym.reflect_z else 1.0])
    if sym.swap_xy:
        R = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]]) @ R
    mats = np.zeros((*SHAPE, 3, 3))
    for k, (i, j) in enumerate(PAIRS):
        mats[..., i, j] = mats[..., j, i] = s.sigma[..., k]
    mats = R @ mats @ R.T

    def move(v: np.ndarray) -> np.ndarray:
        for flag, axis in ((sym.reflect_x, 2), (sym.reflect_y, 1), (sym.reflect_z, 0)):
            v = np.flip(v, axis=axis) if flag else v
        return np.swapaxes(v, 1, 2) if sym.swap_xy else v

    sigma = move(np.stack([mats[..., i, j] for i, j in PAIRS], axis=-1))
    source = move(s.source) * (-1.0 if sym.negate else 1.0)
    return solved_sample(np.ascontiguousarray(sigma), np.ascontiguousarray(source), move(s.mask), s.source_point @ R.T)


@pytest.mark.parametrize(
    "sym",
    [Symmetry(*bits) for bits in itertools.product((False, True), repeat=5) if sum(bits) in (1, 3, 5)],
    ids=lambda s: "".join(k[0] for k, v in s.__dict__.items() if v) or "id",
)
def test_symmetry_of_an_item_equals_the_item_of_the_transformed_solved_sample(sym):
    s = asymmetric_sample(np.random.default_rng(0))
    t = transformed_sample(s, sym)
    ds = PotentialDataset([], FieldScaler(1e4, 1e-3), singularity_radius=1.0, region="tissue", prior_core_m=2e-3)
    got = apply_symmetry(ds.build_item(s), sym)
    want = ds.build_item(t)
    for key in ("sigma", "f", "mask", "tissue", "spacing"):
        torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=1e-5, msg=key)
    for key in ("phi", "prior"):
        scale = float(want[key].abs().max())
        torch.testing.assert_close(got[key], want[key], atol=1e-5 * scale, rtol=0, msg=key)


def test_augmented_dataset_draws_every_variant_and_skips_the_swap_on_non_square_grids():
    s = asymmetric_sample(np.random.default_rng(1))
    ds = PotentialDataset([], FieldScaler(1e4, 1e-3), singularity_radius=1.0, region="tissue")
    item = ds.build_item(s)
    assert can_swap_xy(item)
    assert not can_swap_xy({**item, "sigma": item["sigma"][..., :7]})
    torch.manual_seed(0)
    seen = {Symmetry.random() for _ in range(400)}
    assert len(seen) == 32
    assert not any(Symmetry.random(allow_swap=False).swap_xy for _ in range(50))
