"""Masks: balls around every source pole (radius, scaling at 2x) and the rotation-invariant muscle match."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from support_train import FAT, MUSCLE

from fieldlab.errors import InputError
from fieldlab.potential.data import masking


def brute_ball(shape, poles, radius, scale=(1, 1, 1)):
    out = np.zeros(shape, dtype=bool)
    for idx in itertools.product(*(range(n) for n in shape)):
        for p in poles:
            if sum(((i - c) / (radius * s)) ** 2 for i, c, s in zip(idx, p, scale, strict=True)) <= 1:
                out[idx] = True
    return out


@pytest.mark.parametrize("radius", [1.0, 2.0, 3.0])
def test_single_ball_matches_enumeration_and_volume(radius):
    """A ball of radius r (in voxels) holds the lattice points with |i - c| <= r, e.g. 7 for r = 1, 33 for r = 2."""
    shape, pole = (11, 11, 11), [(5, 5, 5)]
    got = masking.singularity_mask(shape, torch.tensor(pole), radius).numpy()
    np.testing.assert_array_equal(got, brute_ball(shape, pole, radius))
    expected = {1.0: 7, 2.0: 33, 3.0: 123}[radius]  # lattice points in a ball (OEIS A000605)
    assert got.sum() == expected


def test_every_pole_is_excluded():
    shape = (12, 8, 8)
    poles = torch.tensor([[2, 2, 2], [9, 5, 5], [6, 1, 6]])
    got = masking.singularity_mask(shape, poles, 1.5)
    for p in poles.tolist():
        assert got[tuple(p)]
    np.testing.assert_array_equal(got.numpy(), brute_ball(shape, poles.tolist(), 1.5))


def test_scaled_ball_is_the_same_physical_region():
    """At 2x (scale 2) a radius-r ball spans 2r voxels: the physical radius, hence the covered volume, is kept."""
    r = 3.0
    base = masking.singularity_mask((40, 40, 40), torch.tensor([[20, 20, 20]]), r)
    fine = masking.singularity_mask((80, 80, 80), torch.tensor([[40, 40, 40]]), r, scale=(2, 2, 2))
    vol = 4 / 3 * math.pi * r**3
    assert abs(int(base.sum()) - vol) / vol < 0.1
    assert abs(int(fine.sum()) / 8 - vol) / vol < 0.03
    assert not masking.singularity_mask((5, 5, 5), torch.tensor([[2, 2, 2]]), 0.0).any()


def rotate(sigma6, angle):
    s = masking.sigma_matrix(torch.tensor(sigma6, dtype=torch.float64))
    c, n = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[1.0, 0, 0], [0, c, -n], [0, n, c]], dtype=torch.float64)
    r = rot @ s @ rot.T
    return [r[0, 0], r[1, 1], r[2, 2], r[0, 1], r[0, 2], r[1, 2]]


def test_muscle_mask_matches_muscle_and_rotated_muscle_only():
    half = [0.5 * (m + f) for m, f in zip(MUSCLE, FAT, strict=True)]  # a partial-volume voxel
    sigma = torch.tensor([MUSCLE, FAT, rotate(MUSCLE, 0.4), half, [0.0] * 6], dtype=torch.float32)
    got = masking.muscle_mask(sigma.reshape(5, 1, 1, 6), MUSCLE, rtol=1e-3).reshape(-1).tolist()
    assert got == [True, False, True, False, False]


def test_sigma_matrix_is_symmetric_in_channel_order():
    m = masking.sigma_matrix(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    np.testing.assert_array_equal(m.numpy(), [[1, 4, 5], [4, 2, 6], [5, 6, 3]])


def test_source_poles_finds_peak_and_trough():
    f = torch.zeros(6, 5, 4)
    f[1, 2, 3], f[4, 0, 1] = 2.0, -1.5
    assert masking.source_poles(f).tolist() == [[1, 2, 3], [4, 0, 1]]
    f[4, 0, 1] = 0.0
    assert masking.source_poles(f).tolist() == [[1, 2, 3]]


def test_loss_mask_is_region_minus_singular():
    region = torch.tensor([True, True, False, False])
    singular = torch.tensor([True, False, True, False])
    assert masking.loss_mask(region, singular).tolist() == [False, True, False, False]


@pytest.mark.parametrize(
    ("n_mask", "n_tissue", "refused"),
    [(0, 0, True), (0, 50, True), (1, 101, True), (2, 101, False), (1, 100, False)],
    ids=["no-tissue", "empty", "1-of-101", "2-of-101", "1-of-100"],
)
def test_coverage_floor_is_one_percent_of_the_tissue(n_mask, n_tissue, refused):
    """MIN_MASK_FRACTION = 1 %: 1 of 101 tissue voxels (0.99 %) is refused, 2 of 101 and 1 of 100 pass; an empty
    mask is refused whatever the tissue."""
    tissue = torch.zeros(300, dtype=torch.bool)
    tissue[:n_tissue] = True
    mask = torch.zeros(300, dtype=torch.bool)
    mask[:n_mask] = True
    if not refused:
        masking.check_coverage(mask, tissue, "s.npz", lambda: "the rule")
        return
    with pytest.raises(InputError, match=rf"s\.npz: the loss mask holds {n_mask} of {n_tissue} .* 1%.*; the rule"):
        masking.check_coverage(mask, tissue, "s.npz", lambda: "the rule")


def test_dominant_tensor_is_the_pure_tissue_of_a_label():
    """Three pure muscle voxels and two different partial volumes labelled muscle: the pure tensor is the mode."""
    half = [0.5 * (m + f) for m, f in zip(MUSCLE, FAT, strict=True)]
    third = [(m + 2 * f) / 3 for m, f in zip(MUSCLE, FAT, strict=True)]
    sigma = torch.tensor([half, MUSCLE, third, MUSCLE, MUSCLE, FAT], dtype=torch.float64).reshape(6, 1, 1, 6)
    labels = torch.tensor([3, 3, 3, 3, 3, 2]).reshape(6, 1, 1)
    assert masking.dominant_tensor(sigma, labels, 3) == list(MUSCLE)
    assert masking.dominant_tensor(sigma, labels, 2) == list(FAT)
    assert masking.dominant_tensor(sigma, labels, 4) is None
