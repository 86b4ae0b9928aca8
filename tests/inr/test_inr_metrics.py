"""Scores of an INR fit: R2, Pearson r2 and the regression line against numpy; SSIM by hand; compression ratio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fieldlab.config import INRConfig, NGPConfig
from fieldlab.inr.models.registry import build_inr, compression_ratio, count_parameters
from fieldlab.inr.scores import K1, K2, SIGMA, regression_stats, ssim, ssim_map


def test_statistics_match_numpy_references():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 7, 4))
    p = 0.8 * y + 0.3 + 0.2 * rng.normal(size=y.shape)
    s = regression_stats(y, p)
    yf, pf = y.ravel(), p.ravel()
    slope, intercept = np.polyfit(yf, pf, 1)
    assert s.mse == pytest.approx(np.mean((yf - pf) ** 2), rel=1e-12)
    assert s.r2 == pytest.approx(1 - np.sum((yf - pf) ** 2) / np.sum((yf - yf.mean()) ** 2), rel=1e-12)
    assert s.pearson_r2 == pytest.approx(np.corrcoef(yf, pf)[0, 1] ** 2, rel=1e-10)
    assert s.slope == pytest.approx(slope, rel=1e-10)
    assert s.intercept == pytest.approx(intercept, rel=1e-9)
    assert s.n == y.size


@pytest.mark.parametrize("scale", [0.5, 1.5, 2.0])
def test_scaled_prediction_lowers_r2_but_not_pearson(scale):
    """For zero-mean y and p = a y: SS_res = (1 - a)^2 SS_tot, so R2 = 1 - (1 - a)^2, while corr = 1 and slope = a."""
    y = np.random.default_rng(1).normal(size=1000)
    y -= y.mean()
    s = regression_stats(y, scale * y)
    assert s.r2 == pytest.approx(1 - (1 - scale) ** 2, abs=1e-12)
    assert s.pearson_r2 == pytest.approx(1.0, abs=1e-12)
    assert s.slope == pytest.approx(scale, abs=1e-12)
    assert s.intercept == pytest.approx(0.0, abs=1e-12)


def test_offset_prediction_has_r2_below_one_and_unit_pearson():
    """p = y + c: SS_res = n c^2, R2 = 1 - c^2 / var(y); slope 1, intercept c."""
    y = np.linspace(-1, 1, 101)
    s = regression_stats(y, y + 0.1)
    assert s.r2 == pytest.approx(1 - 0.01 / y.var(), abs=1e-12)
    assert s.pearson_r2 == pytest.approx(1.0) and s.slope == pytest.approx(1.0) and s.intercept == pytest.approx(0.1)


def test_constant_truth_is_undefined_and_bad_shapes_raise():
    s = regression_stats(np.ones(5), np.arange(5.0))
    assert math.isnan(s.r2) and math.isnan(s.pearson_r2) and math.isnan(s.slope)
    with pytest.raises(ValueError, match="expected equal"):
        regression_stats(np.ones(5), np.ones(4))


# ---- compression ratio -----------------------------------------------------------------------------------------
def test_siren_txy_parameter_count_and_compression_ratio():
    """SIREN 3 -> 256 x 3 -> C: (3*256 + 256) + 2 (256*256 + 256) + (256 C + C) parameters; ratio = T N C / params."""
    cfg = INRConfig(model="siren_txy", hidden_features=256, hidden_layers=3)
    n_params = count_parameters(build_inr(cfg, n_particles=9000, n_components=4))
    expected = (3 * 256 + 256) + 2 * (256 * 256 + 256) + (256 * 4 + 4)
    assert n_params == expected
    assert compression_ratio(48 * 9000 * 4, n_params) == pytest.approx(1_728_000 / expected)


def test_siren_t_output_layer_spans_all_particles():
    """siren_t: 1 -> H x L -> N C; at 9000 particles x 4 the last layer alone is 256 * 36000 + 36000."""
    cfg = INRConfig(model="siren_t", hidden_features=256, hidden_layers=3)
    n_params = count_parameters(build_inr(cfg, n_particles=9000, n_components=4))
    assert n_params == (256 + 256) + 2 * (256 * 256 + 256) + (256 * 36000 + 36000)
    assert compression_ratio(48 * 9000 * 4, n_params) < 1  # more parameters than values


def test_ngp_parameter_count():
    """Hash grid: sum over levels of min((N_l + 1)^3, T) * F, plus the MLP (L F -> W -> W -> C)."""
    ngp = NGPConfig(levels=3, features=2, log2_table_size=10, base_resolution=4, growth=2.0, mlp_width=8, mlp_layers=2)
    n_params = count_parameters(build_inr(INRConfig(model="ngp", ngp=ngp), n_particles=10, n_components=1))
    table = (5**3 + 9**3 + 2**10) * 2
    mlp = (6 * 8 + 8) + (8 * 8 + 8) + (8 * 1 + 1)
    assert n_params == table + mlp
    with pytest.raises(ValueError):
        compression_ratio(10, 0)


# ---- SSIM ------------------------------------------------------------------------------------------------------
def test_ssim_of_constant_maps_by_hand():
    """Constant maps a = m_a, b = m_b: all variances vanish, the contrast-structure factor is C2 / C2 = 1 and
    SSIM = (2 m_a m_b + C1) / (m_a^2 + m_b^2 + C1), C1 = (K1 L)^2."""
    a, b, data_range = np.full((20, 20), 0.7), np.full((20, 20), 0.4), 2.0
    c1 = (K1 * data_range) ** 2
    expected = (2 * 0.7 * 0.4 + c1) / (0.7**2 + 0.4**2 + c1)
    np.testing.assert_allclose(ssim_map(a, b, data_range), expected, rtol=1e-12)


def test_ssim_matches_explicit_gaussian_window_sums_in_the_interior():
    """Dense reference at one interior pixel: normalised Gaussian weights w (sigma 1.5, radius 5) and the
    weighted means, variances and covariance written out as sums."""
    rng = np.random.default_rng(3)
    a = rng.random((24, 24))
    b = a + 0.3 * rng.random((24, 24))
    i, j, r = 12, 11, 5
    off = np.arange(-r, r + 1)
    w = np.exp(-(off[:, None] ** 2 + off[None, :] ** 2) / (2 * SIGMA**2))
    w /= w.sum()
    pa, pb = a[i - r : i + r + 1, j - r : j + r + 1], b[i - r : i + r + 1, j - r : j + r + 1]
    ma, mb = np.sum(w * pa), np.sum(w * pb)
    va, vb = np.sum(w * (pa - ma) ** 2), np.sum(w * (pb - mb) ** 2)
    cov = np.sum(w * (pa - ma) * (pb - mb))
    c1, c2 = (K1 * 1.0) ** 2, (K2 * 1.0) ** 2
    expected = (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    assert ssim_map(a, b, 1.0)[i, j] == pytest.approx(expected, rel=1e-10)


def test_ssim_properties():
    rng = np.random.default_rng(4)
    a = rng.random((32, 32))
    noisy = a + 0.2 * rng.normal(size=a.shape)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, noisy, data_range=1.0) == pytest.approx(ssim(noisy, a, data_range=1.0), abs=1e-12)
    assert ssim(a, noisy) < ssim(a, a + 0.05 * rng.normal(size=a.shape)) < 1.0
    mask = np.zeros_like(a, dtype=bool)
    mask[:16] = True
    half = a.copy()
    half[16:] = 0.0  # only the unmasked half differs
    assert ssim(a, half, mask=mask) > ssim(a, half)
    with pytest.raises(ValueError, match="mask"):
        ssim(a, a, mask=np.zeros_like(mask))


def test_ssim_stays_in_its_bounds_on_maps_with_large_offsets() -> None:
    """|SSIM| <= 1 by Cauchy-Schwarz; maps with a large offset and tiny variation once broke it by cancellation."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        offset, eps = 10 ** rng.uniform(-3, 6), 10 ** rng.uniform(-12, 0)
        a = offset + eps * rng.random((24, 24))
        b = offset * rng.choice([-1, 1]) + eps * rng.uniform(-3, 3) * rng.random((24, 24))
        span = float(a.max() - a.min())
        assert abs(ssim(a, b, data_range=span if span > 0 else 1.0)) <= 1.0 + 1e-12
