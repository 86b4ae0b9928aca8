"""Truncated SVD (proper orthogonal decomposition, POD) of a per-particle field over frames, splined in time.

The field ``y`` ``(T, N, C)`` less its per-component mean ``m_c`` (over frames and particles) is arranged as the
matrix ``X`` ``(T C, N)`` with row ``(t, c)`` and column ``n`` (particle), and factorised once,

    X = U S V^T,    X_r = U_r S_r V_r^T    (the leading r singular triples),

with LAPACK's divide-and-conquer SVD (:func:`scipy.linalg.svd`). By Eckart-Young, ``X_r`` is the best rank-r
approximation in the Frobenius norm, so the fitted R2 of the project's convention (values centred per component,
``SS_tot = ||X||_F^2``) is

    R2(r) = 1 - sum_{k > r} s_k^2 / sum_k s_k^2.

Stored floats: the temporal coefficients ``A = U_r S_r`` ``(T C, r)``, the modes ``V_r^T`` ``(r, N)`` and the
means ``(C,)``: ``r (T C + N) + C``.

A frame between fitted frames is answered by a cubic spline (:class:`scipy.interpolate.CubicSpline`, not-a-knot)
of each temporal coefficient over the frame index; a particle outside the fit has no mode column, so it is not
answerable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.linalg import svd


@dataclass(frozen=True)
class POD:
    """Rank-r POD of one field window: ``mean`` ``(C,)``, ``temporal`` ``(T, C, r)``, ``modes`` ``(r, N)``,
    ``frames`` ``(T,)`` (the fitted frame indices), ``energy`` ``(min(T C, N),)`` (every ``s_k^2``) and the SVD's
    wall seconds."""

    mean: np.ndarray
    temporal: np.ndarray
    modes: np.ndarray
    frames: np.ndarray
    energy: np.ndarray
    seconds: float

    @property
    def rank(self) -> int:
        return self.modes.shape[0]

    @property
    def n_stored(self) -> int:
        """Floats stored: ``r (T C + N) + C``."""
        t, c, r = self.temporal.shape
        return r * (t * c + self.modes.shape[1]) + c

    def unexplained(self) -> np.ndarray:
        """``1 - R2(r)`` of the fitted frames for every rank ``r = 1 .. min(T C, N)`` (module docstring)."""
        total = float(self.energy.sum())
        if total <= 0:
            return np.zeros(self.energy.size)
        return np.maximum(1.0 - np.cumsum(self.energy) / total, 0.0)

    def reconstruct(self) -> np.ndarray:
        """The rank-r field at the fitted frames, ``(T, N, C)`` float64."""
        # t frame, c component, r mode, n particle
        return np.einsum("tcr,rn->tnc", self.temporal, self.modes) + self.mean

    def at_frames(self, frames: np.ndarray) -> np.ndarray:
        """The field at frame indices ``frames`` (fitted or between them), ``(len(frames), N, C)``: each temporal
        coefficient splined over the fitted frames (cubic, not-a-knot; linear for two frames).

        Raises
        ------
        ValueError
            Fewer than two fitted frames, or a frame outside ``[frames[0], frames[-1]]`` (no extrapolation).
        """
        frames = np.asarray(frames, dtype=np.float64)
        lo, hi = float(self.frames[0]), float(self.frames[-1])
        if self.frames.size < 2 or frames.min() < lo or frames.max() > hi:
            raise ValueError(
                f"pod: frames {frames.min():g}..{frames.max():g}: expected within the fitted {lo:g}..{hi:g}"
            )
        coeffs = CubicSpline(self.frames.astype(np.float64), self.temporal, axis=0)(frames)  # (T', C, r)
        return np.einsum("tcr,rn->tnc", coeffs, self.modes) + self.mean


def rank_for(energy: np.ndarray, rank: int, target_r2: float = 0.0) -> int:
    """The rank kept: ``min(rank, len(energy))``, or with ``target_r2 > 0`` the smallest ``r`` whose fitted R2
    reaches it, capped by that.

    Examples
    --------
    >>> rank_for(np.array([4.0, 3.0, 2.0, 1.0]), rank=3, target_r2=0.65)  # R2(1..4) = 0.4, 0.7, 0.9, 1.0
    2
    """
    cap = max(1, min(int(rank), energy.size))
    if target_r2 <= 0:
        return cap
    explained = np.cumsum(energy) / max(float(energy.sum()), np.finfo(float).tiny)
    reached = np.flatnonzero(explained >= target_r2)
    return cap if reached.size == 0 else min(cap, int(reached[0]) + 1)


def fit_pod(values: np.ndarray, frames: np.ndarray, rank: int, target_r2: float = 0.0) -> POD:
    """Rank-r POD of ``values`` ``(T, N, C)`` at frame indices ``frames`` ``(T,)`` (module docstring).

    Examples
    --------
    >>> t, n = np.arange(5.0), np.linspace(0.0, 1.0, 7)
    >>> y = (np.outer(t, n) + 2.0)[:, :, None]  # t n^T less its mean: rank <= 2
    >>> pod = fit_pod(y, np.arange(5), rank=2)
    >>> float(np.abs(pod.reconstruct() - y).max()) < 1e-12, pod.n_stored == 2 * (5 + 7) + 1
    (True, True)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or np.asarray(frames).shape != values.shape[:1]:
        raise ValueError(f"fit_pod: values {values.shape}, frames {np.shape(frames)}: expected (T, N, C) and (T,)")
    n_t, n, n_c = values.shape
    start = time.perf_counter()
    mean = values.reshape(-1, n_c).mean(0)  # (C,)
    x = (values - mean).transpose(0, 2, 1).reshape(n_t * n_c, n)  # (T, N, C) -> (T, C, N) -> (T C, N)
    u, s, vt = svd(x, full_matrices=False, check_finite=False)
    r = rank_for(s**2, rank, target_r2)
    temporal = (u[:, :r] * s[:r]).reshape(n_t, n_c, r)  # (T C, r) -> (T, C, r)
    seconds = time.perf_counter() - start
    return POD(mean, temporal, vt[:r].copy(), np.asarray(frames).copy(), s**2, seconds)
