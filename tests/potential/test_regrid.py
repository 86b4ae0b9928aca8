"""The interpolation baseline's transfer between voxel-centre grids: an independent interpolator, linear fields,
the model's own resampling, and the tissue-aware version's edges and gauge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.interpolate import RegularGridInterpolator

from fieldlab.errors import InputError
from fieldlab.potential.physics.regrid import centre_weights, interpolate_centres, prolong_centres

#: (source, target) pairs: 2x, 1.5x, anisotropic (2 mm along D, 1 mm across), coarser, odd sizes.
PAIRS = [
    ((8, 4, 4), (16, 8, 8)),
    ((8, 4, 4), (12, 6, 6)),
    ((8, 4, 4), (8, 8, 8)),
    ((12, 6, 6), (8, 4, 4)),
    ((5, 3, 7), (11, 4, 9)),
]


def centres(n: int) -> np.ndarray:
    return -1.0 + (np.arange(n) + 0.5) * 2.0 / n


def reference(field: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """scipy's trilinear interpolator on the source cell centres of [-1, 1]^3, queried at the target cell centres
    clipped into the span of the source centres (constant extension at the box ends)."""
    axes = [centres(n) for n in field.shape]
    rgi = RegularGridInterpolator(axes, field, method="linear")
    q = [np.clip(centres(m), a[0], a[-1]) for m, a in zip(shape, axes, strict=True)]
    pts = np.stack(np.meshgrid(*q, indexing="ij"), axis=-1)
    return rgi(pts.reshape(-1, 3)).reshape(shape)


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_agrees_with_an_independent_trilinear_interpolator(source, target):
    field = np.random.default_rng(0).normal(size=source)
    np.testing.assert_allclose(interpolate_centres(field, target), reference(field, target), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_linear_fields_are_exact_inside_the_source_centres(source, target):
    """A linear function of the physical coordinates is reproduced exactly at every target centre that lies within
    the span of the source centres (beyond it the constant extension holds the outermost value)."""
    a = np.array([0.3, -1.2, 2.5])
    src = np.meshgrid(*(centres(n) for n in source), indexing="ij")
    dst = np.meshgrid(*(centres(m) for m in target), indexing="ij")
    out = interpolate_centres(1.0 + sum(c * x for c, x in zip(a, src, strict=True)), target)
    exact = 1.0 + sum(c * x for c, x in zip(a, dst, strict=True))
    inside = np.ones(target, dtype=bool)
    for axis, n in enumerate(source):
        lo, hi = centres(n)[0], centres(n)[-1]
        inside &= (dst[axis] >= lo - 1e-12) & (dst[axis] <= hi + 1e-12)
    assert inside.sum() > 0
    np.testing.assert_allclose(out[inside], exact[inside], rtol=0, atol=1e-12)
    constant = interpolate_centres(np.full(source, 4.0), target)
    np.testing.assert_allclose(constant, 4.0, rtol=0, atol=1e-14)


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_is_the_resampling_of_the_models_restricted_prediction(source, target):
    """``predict_restricted`` carries the model's coarse output back with ``F.interpolate(trilinear,
    align_corners=False)``; this is the same map."""
    field = np.random.default_rng(1).normal(size=source)
    torch_out = F.interpolate(torch.from_numpy(field)[None, None], size=target, mode="trilinear", align_corners=False)
    np.testing.assert_allclose(interpolate_centres(field, target), torch_out[0, 0].numpy(), rtol=0, atol=1e-12)


def test_weights_are_a_partition_of_unity_with_at_most_two_neighbours():
    for n, m in [(1, 5), (2, 3), (48, 72), (72, 48), (7, 7)]:
        w = centre_weights(n, m)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-14)
        assert (w >= 0).all() and ((w > 0).sum(axis=1) <= 2).all()
    np.testing.assert_array_equal(centre_weights(6, 6), np.eye(6))


def test_tissue_aware_transfer_keeps_air_out_and_applies_the_gauge():
    """A tissue slab whose air neighbours hold garbage: where the target voxel reads only tissue the value is the
    plain interpolation (up to the gauge constant); at the slab's edge no air value leaks in (a linear field stays
    within the tissue values); the result is zero-mean over the target tissue and zero in air."""
    source, target = (8, 8, 8), (12, 12, 12)
    z = np.meshgrid(*(centres(n) for n in source), indexing="ij")[0]
    mask = np.zeros(source, dtype=bool)
    mask[:, 2:6, 2:6] = True
    u = np.where(mask, 3.0 * z, 1e6)  # air holds garbage
    fine_mask = np.zeros(target, dtype=bool)
    fine_mask[:, 3:9, 3:9] = True
    out = prolong_centres(u, mask, target, fine_mask)
    assert np.all(out[~fine_mask] == 0.0)
    assert abs(out[fine_mask].mean()) < 1e-12
    zf = np.meshgrid(*(centres(m) for m in target), indexing="ij")[0]
    expected = np.clip(3.0 * zf, 3.0 * centres(8)[0], 3.0 * centres(8)[-1])  # linear in z, held at the ends
    expected = expected - expected[fine_mask].mean()
    np.testing.assert_allclose(out[fine_mask], expected[fine_mask], rtol=0, atol=1e-9)


def test_bad_shapes_are_refused():
    with pytest.raises(InputError, match="three positive"):
        interpolate_centres(np.zeros((2, 2, 2)), (2, 2))
    with pytest.raises(InputError, match="expected \\(D, H, W\\)"):
        interpolate_centres(np.zeros((2, 2)), (2, 2, 2))
    with pytest.raises(InputError, match="target_mask"):
        prolong_centres(np.zeros((2, 2, 2)), np.ones((2, 2, 2)), (4, 4, 4), np.ones((3, 3, 3)))
