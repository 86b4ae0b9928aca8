"""Agreement of a prediction with the truth: MSE, true R2, squared Pearson correlation and the regression line.

With truth ``y`` and prediction ``p`` over all ``n`` values (float64):

    MSE        = sum (p - y)^2 / n
    R2         = 1 - SS_res / SS_tot,  SS_res = sum (y - p)^2,  SS_tot = sum (y - mean y)^2
    pearson_r2 = cov(y, p)^2 / (var y * var p)
    slope      = cov(y, p) / var y,  intercept = mean p - slope * mean y     (least squares of p on y)

``pearson_r2`` is blind to a scale or offset error (``p = 2 y`` has ``pearson_r2 = 1`` but ``R2 = 0``); report R2
and the slope together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


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
