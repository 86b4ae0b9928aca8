"""Scores of an INR fit against the truth: regression statistics (MSE, true R2, slope) and SSIM of 2D maps.

**Regression.** Agreement of a prediction with the truth: MSE, true R2, squared Pearson correlation and the
regression line.

With truth ``y`` and prediction ``p`` over all ``n`` values (float64):

    MSE        = sum (p - y)^2 / n
    R2         = 1 - SS_res / SS_tot,  SS_res = sum (y - p)^2,  SS_tot = sum (y - mean y)^2
    pearson_r2 = cov(y, p)^2 / (var y * var p)
    slope      = cov(y, p) / var y,  intercept = mean p - slope * mean y     (least squares of p on y)

``pearson_r2`` is blind to a scale or offset error (``p = 2 y`` has ``pearson_r2 = 1`` but ``R2 = 0``); report R2
and the slope together.

**SSIM.** Structural similarity (SSIM) of two 2D maps with a Gaussian window, optionally averaged over a mask.

At every pixel, with Gaussian-weighted local means ``mu``, variances ``sigma^2`` and covariance ``sigma_ab``
(window ``sigma = 1.5``, radius ``ceil(3.5 sigma)`` = 11 x 11, population statistics):

    SSIM = (2 mu_a mu_b + C1) (2 sigma_ab + C2) / ((mu_a^2 + mu_b^2 + C1) (sigma_a^2 + sigma_b^2 + C2)),
    C1 = (K1 L)^2, C2 = (K2 L)^2, K1 = 0.01, K2 = 0.03, L = data range

(Wang et al. 2004, eq. 13; the same as ``skimage.metrics.structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False)`` away from the borders). The map's mean over all pixels, or over the
pixels of ``mask``, is returned.

References
----------
Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from error visibility to
structural similarity", IEEE Trans. Image Process. 13(4), 2004.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

K1, K2, SIGMA, TRUNCATE = 0.01, 0.03, 1.5, 3.5  # SSIM constants and Gaussian window


@dataclass(frozen=True)
class RegressionStats:
    """Scores of a prediction against the truth (see the module docstring for the formulas)."""

    mse: float
    r2: float
    pearson_r2: float
    slope: float
    intercept: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def regression_stats(truth: np.ndarray, pred: np.ndarray) -> RegressionStats:
    """Scores of ``pred`` against ``truth`` over all their values (any equal shapes).

    Undefined quantities (constant truth or prediction) are NaN.

    Examples
    --------
    >>> y = np.array([0.0, 1.0, 2.0, 3.0])
    >>> s = regression_stats(y, 2 * y + 1)
    >>> round(s.pearson_r2, 12), s.slope, s.intercept, s.r2
    (1.0, 2.0, 1.0, -5.0)
    """
    y = np.asarray(truth, dtype=np.float64).ravel()
    p = np.asarray(pred, dtype=np.float64).ravel()
    if y.shape != p.shape or y.size == 0:
        shapes = f"truth {np.shape(truth)} and pred {np.shape(pred)}"
        raise ValueError(f"regression_stats: {shapes}: expected equal, non-empty shapes")
    dy, dp = y - y.mean(), p - p.mean()
    ss_res = float(np.sum((y - p) ** 2))
    ss_tot = float(np.sum(dy * dy))
    ss_p = float(np.sum(dp * dp))
    cov = float(np.sum(dy * dp))
    nan = float("nan")
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else nan
    pearson = cov * cov / (ss_tot * ss_p) if ss_tot > 0 and ss_p > 0 else nan
    slope = cov / ss_tot if ss_tot > 0 else nan
    intercept = float(p.mean() - slope * y.mean()) if ss_tot > 0 else nan
    return RegressionStats(ss_res / y.size, r2, pearson, slope, intercept, int(y.size))


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    """Per-pixel SSIM of two equal-shape 2D maps (borders reflected)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"ssim: maps of shapes {a.shape} and {b.shape}: expected two equal 2D shapes")
    if not data_range > 0:
        raise ValueError(f"ssim: data_range = {data_range}: expected > 0")

    def blur(x: np.ndarray) -> np.ndarray:
        return gaussian_filter(x, sigma=SIGMA, truncate=TRUNCATE, mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    # Second moments of maps shifted by one common constant (variances and covariance do not change), so that
    # E[x^2] - E[x]^2 does not cancel catastrophically on maps with a large offset; round-off is then clipped to
    # the admissible set (var >= 0, |cov| <= sqrt(var_a var_b)), which keeps |SSIM| <= 1.
    shift = float(np.mean(a))
    a0, b0 = a - shift, b - shift
    m_a0, m_b0 = mu_a - shift, mu_b - shift
    var_a = np.maximum(blur(a0 * a0) - m_a0**2, 0.0)
    var_b = np.maximum(blur(b0 * b0) - m_b0**2, 0.0)
    bound = np.sqrt(var_a * var_b)
    cov = np.clip(blur(a0 * b0) - m_a0 * m_b0, -bound, bound)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float | None = None, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of map ``b`` against reference ``a``.

    Parameters
    ----------
    a, b
        2D maps of equal shape; ``a`` is the reference.
    data_range
        ``L`` in the constants; default ``a.max() - a.min()`` (1 if ``a`` is constant).
    mask
        Boolean map: average only over these pixels (e.g. cells that hold particles).

    Examples
    --------
    >>> x = np.random.default_rng(0).random((16, 16))
    >>> round(ssim(x, x), 12)
    1.0
    """
    if data_range is None:
        span = float(np.max(a) - np.min(a))
        data_range = span if span > 0 else 1.0
    m = ssim_map(a, b, data_range)
    if mask is None:
        return float(m.mean())
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != m.shape or not mask.any():
        raise ValueError(f"ssim: mask of shape {mask.shape} with {int(mask.sum())} pixels: expected {m.shape}, >= 1")
    return float(m[mask].mean())
