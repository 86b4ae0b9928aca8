"""The analytic prior: pole currents against the closed-form Gaussian integral, the potential against the
isotropic point-source formula (gauge-free differences), its gauge, the loader channel and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support_train import write_corpus

from fieldlab.errors import InputError
from fieldlab.potential.data.loader import PotentialDataset, split_files
from fieldlab.potential.data.prior import free_space_prior, pole_currents, voxel_points
from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.schema import PotentialSample

SHAPE = (40, 32, 32)
H = 1e-3  # m


def gaussian_bipole(sigma_xx: float = 0.3, width: float = 2e-3, amp: float = 5e5, air_at_pole: bool = False):
    """A homogeneous isotropic box with a Gaussian bipole ``amp exp(-|r - p|^2 / w^2)`` (+ and -)."""
    spacing = np.array([H, H, H])
    points = voxel_points(SHAPE, spacing)
    poles = np.array([[0.0, 0.0, -0.008], [0.0, 0.0, 0.008]])
    source = sum(
        s * amp * np.exp(-np.sum((points - p) ** 2, -1) / width**2) for s, p in zip((1, -1), poles, strict=True)
    )
    sigma = np.zeros((*SHAPE, 6))
    sigma[..., :3] = sigma_xx
    index = np.array([np.unravel_index(np.argmin(np.sum((points - p) ** 2, -1)), SHAPE) for p in poles])
    mask = np.ones(SHAPE, dtype=bool)
    mask[:, :, :2] = False  # a slab of air
    sigma[~mask] = 0.0
    if air_at_pole:
        sigma[tuple(index[0])] = 0.0
    u = np.zeros(SHAPE)
    return PotentialSample(sigma, source, mask, mask.astype(np.uint8), u, spacing, poles, index)


def test_voxel_points_are_centred_cell_centres():
    pts = voxel_points((2, 3, 4), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(pts[0, 0, :, 0], [-1.5, -0.5, 0.5, 1.5])  # x along W
    np.testing.assert_allclose(pts[0, :, 0, 1], [-2.0, 0.0, 2.0])  # y along H
    np.testing.assert_allclose(pts[:, 0, 0, 2], [-1.5, 1.5])  # z along D


def test_pole_currents_equal_the_gaussian_integral():
    """int amp exp(-r^2 / w^2) dV = amp pi^(3/2) w^3 (the midpoint rule is spectrally accurate for w = 2h)."""
    s = gaussian_bipole()
    currents = pole_currents(s.source, voxel_points(SHAPE, s.spacing), s.source_point, s.spacing)
    exact = 5e5 * np.pi**1.5 * (2e-3) ** 3
    np.testing.assert_allclose(currents, [exact, -exact], rtol=1e-6)


def test_prior_matches_the_point_source_formula_away_from_the_poles():
    """Differences of the prior between tissue points (gauge-free) equal those of I / (4 pi sigma r) summed over
    both poles; the Gaussian-cored prior differs from a point source only within a few core widths."""
    sigma = 0.3
    s = gaussian_bipole(sigma)
    prior = free_space_prior(s, core_m=1e-3)
    pts = voxel_points(SHAPE, s.spacing)
    current = 5e5 * np.pi**1.5 * (2e-3) ** 3
    r = [np.linalg.norm(pts - p, axis=-1) for p in s.source_point]
    exact = current / (4 * np.pi * sigma) * (1 / r[0] - 1 / r[1])
    far = s.mask & (r[0] > 6e-3) & (r[1] > 6e-3)
    a, b = np.argwhere(far)[[0, -1]]
    diff = prior[tuple(a)] - prior[tuple(b)]
    assert diff == pytest.approx(exact[tuple(a)] - exact[tuple(b)], rel=1e-6)
    offset = (prior - exact)[far]
    assert np.ptp(offset) < 1e-6 * np.abs(exact[far]).max()  # one constant (the gauge) everywhere away from poles


def test_prior_gauge_zero_mean_over_tissue_and_zero_in_air():
    s = gaussian_bipole()
    prior = free_space_prior(s, core_m=2e-3)
    assert np.all(np.isfinite(prior))
    assert abs(prior[s.mask].mean()) < 1e-12 * np.abs(prior).max()
    assert np.all(prior[~s.mask] == 0)


def test_pole_in_air_is_a_one_line_error():
    with pytest.raises(InputError, match=r"source pole at voxel .*expected a positive-definite tensor"):
        free_space_prior(gaussian_bipole(air_at_pole=True), core_m=2e-3)


def test_loader_adds_the_scaled_prior_only_when_asked(tmp_path):
    root = write_corpus(tmp_path / "potential")
    files = split_files(root, "train")
    scaler = FieldScaler(f_scale=1.0, u_scale=2e-3)
    tiny = {"singularity_radius": 1.0}  # the default 3-voxel balls would cover the 8x6x6 grid's muscle
    with_prior = PotentialDataset(files, scaler, prior_core_m=2e-3, **tiny)[0]
    plain = PotentialDataset(files, scaler, **tiny)[0]
    assert "prior" not in plain
    raw = free_space_prior(with_prior_sample := PotentialDataset(files, scaler).sample(0), 2e-3)
    assert with_prior["prior"].shape == (1, *with_prior_sample.shape)
    torch.testing.assert_close(with_prior["prior"][0], torch.from_numpy((raw / 2e-3).astype(np.float32)))
