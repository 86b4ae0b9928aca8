"""The compiled block transfers against array expressions written independently here (reshape sums, separable
trilinear weights), an exactly reproduced linear field, and the same bytes on any number of threads."""

from __future__ import annotations

import numpy as np
import pytest

from fieldlab.potential.physics.fem import stencil
from fieldlab.potential.physics.fem.blocks import block_sums, prolong_values


def reshape_sum(a: np.ndarray, f: tuple[int, int, int]) -> np.ndarray:
    D, H, W = a.shape[:3]
    return a.reshape(D // f[0], f[0], H // f[1], f[1], W // f[2], f[2], *a.shape[3:]).sum(axis=(1, 3, 5))


def separable(corners: np.ndarray, f: tuple[int, int, int]) -> np.ndarray:
    """Trilinear interpolation of corner values at the fine centres, one axis at a time."""
    out = corners
    for axis, r in enumerate(f):
        n = out.shape[axis] - 1
        i = np.arange(n * r)
        j, s = i // r, (i % r + 0.5) / r
        lo, hi = np.take(out, j, axis=axis), np.take(out, j + 1, axis=axis)
        shape = [1, 1, 1]
        shape[axis] = -1
        out = lo * (1 - s).reshape(shape) + hi * s.reshape(shape)
    return out


@pytest.fixture
def fields():
    rng = np.random.default_rng(3)
    shape = (12, 8, 6)
    mask = rng.random(shape) < 0.6
    sigma = rng.random((*shape, 6)).astype(np.float32)
    source = rng.standard_normal(shape).astype(np.float32)
    return sigma, source, mask


@pytest.mark.parametrize("factor", [(2, 2, 2), (3, 2, 1), (4, 4, 3)])
def test_block_sums_match_reshape_sums(fields, factor):
    sigma, source, mask = fields
    count, sums, current = block_sums(sigma, source, mask, factor)
    np.testing.assert_array_equal(count, reshape_sum(mask.astype(np.float64), factor))
    expect = reshape_sum(np.where(mask[..., None], sigma.astype(np.float64), 0.0), factor)
    np.testing.assert_allclose(sums, expect, rtol=1e-13, atol=0)
    np.testing.assert_allclose(current, reshape_sum(source.astype(np.float64), factor), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("factor", [(2, 2, 2), (3, 1, 2)])
def test_prolongation_with_every_corner_active_is_trilinear(factor):
    corners = np.random.default_rng(4).standard_normal((5, 4, 3))
    got = prolong_values(corners, np.ones(corners.shape, dtype=bool), factor)
    np.testing.assert_allclose(got, separable(corners, factor), rtol=0, atol=1e-13)


def test_prolongation_is_exact_for_linear_fields_and_bounded_by_active_corners():
    """In a cell with every corner active a linear field is reproduced exactly; renormalised over the active
    corners, any value lies between the active corners' extremes (a convex combination); a cell with no active
    corner gives NaN."""
    shape = (4, 3, 3)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    phi = 0.5 + 2.0 * z - 1.5 * y + 0.25 * x
    active = np.zeros(shape, dtype=bool)
    active[:2, :2, :2] = True  # coarse cell (0, 0, 0) fully active; its neighbours share some of its corners
    got = prolong_values(phi, active, (2, 2, 2))
    r = 2
    fz, fy, fx = np.meshgrid(*((np.arange(r) + 0.5) / r for _ in range(3)), indexing="ij")
    np.testing.assert_allclose(got[:r, :r, :r], 0.5 + 2.0 * fz - 1.5 * fy + 0.25 * fx, atol=1e-13)
    defined = np.isfinite(got)
    assert np.isnan(got[-1, -1, -1]) and defined[: 2 * r, : 2 * r, : 2 * r].all()
    lo, hi = phi[active].min(), phi[active].max()
    assert (got[defined] >= lo - 1e-12).all() and (got[defined] <= hi + 1e-12).all()


def test_same_bytes_on_any_number_of_threads(monkeypatch):
    rng = np.random.default_rng(5)
    shape = (96, 48, 24)  # over stencil.PARALLEL_MIN: the kernels split
    mask = rng.random(shape) < 0.5
    sigma = rng.random((*shape, 6))
    source = rng.standard_normal(shape)
    corners = rng.standard_normal((49, 25, 13))
    active = rng.random(corners.shape) < 0.7
    runs = []
    for threads in (1, 3):
        monkeypatch.setattr(stencil, "kernel_threads", lambda threads=threads: threads)
        runs.append((*block_sums(sigma, source, mask, (2, 2, 2)), prolong_values(corners, active, (2, 2, 2))))
    for a, b in zip(*runs, strict=True):
        assert a.tobytes() == b.tobytes()
