"""Closed-form potentials used to verify the solver: anisotropic point sources and a Neumann manufactured solution."""

from __future__ import annotations

import numpy as np


def tensor(channels: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """``(3, 3)`` symmetric matrix from the six channels (xx, yy, zz, xy, xz, yz)."""
    xx, yy, zz, xy, xz, yz = (float(c) for c in channels)
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def point_source_potential(
    points: np.ndarray, source: np.ndarray, current: float, sigma: np.ndarray, width: float | None = None
) -> np.ndarray:
    """Potential of a point current in an infinite homogeneous anisotropic medium.

    ``Phi(r) = I / (4 pi sqrt(det sigma) sqrt((r - r0)^T sigma^-1 (r - r0)))``: the isotropic ``I / (4 pi s |r|)``
    after the change of variables ``r' = sigma^(-1/2) r`` that maps ``div(sigma grad)`` to ``sqrt(det sigma)``
    times the Laplacian. With ``width`` the current is spread as ``exp(-rho^2 / (2 w^2))``, ``rho^2 = r^T sigma^-1 r``
    (a spherical Gaussian after the change of variables), whose potential is the above times ``erf(rho / (sqrt2 w))``.

    Parameters
    ----------
    points : ``(..., 3)`` physical (x, y, z) in metres.
    source : ``(3,)`` source position (x, y, z).
    current : injected current I in amperes.
    sigma : ``(3, 3)`` symmetric positive-definite conductivity in S/m.
    width : optional Gaussian width ``w`` in the sigma metric (units m / sqrt(S/m)).

    Examples
    --------
    >>> s = np.eye(3) * 2.0
    >>> bool(np.isclose(point_source_potential(np.array([1.0, 0, 0]), np.zeros(3), 1.0, s), 1 / (8 * np.pi)))
    True
    """
    r = np.asarray(points, dtype=np.float64) - np.asarray(source, dtype=np.float64)
    inv = np.linalg.inv(sigma)
    rho = np.sqrt(np.einsum("...i,ij,...j->...", r, inv, r))  # sqrt(r^T sigma^-1 r) for every point
    scale = current / (4.0 * np.pi * np.sqrt(np.linalg.det(sigma)))
    with np.errstate(divide="ignore", invalid="ignore"):
        if width is None:
            return scale / rho  # infinite at the source itself
        from scipy.special import erf

        # erf(a rho) / rho -> a 2 / sqrt(pi) as rho -> 0, with a = 1 / (sqrt2 w)
        a = 1.0 / (np.sqrt(2.0) * width)
        return scale * np.where(rho > 0, erf(a * rho) / np.where(rho > 0, rho, 1.0), 2.0 * a / np.sqrt(np.pi))


def manufactured_cosine(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], sigma_diag: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``u`` and ``f = -div(sigma grad u)`` at voxel centres of the box ``[0, L]`` with zero normal flux.

    ``u = cos(pi x / Lx) cos(pi y / Ly) cos(pi z / Lz)`` has zero normal derivative on every face and zero mean,
    and for ``sigma = diag(sx, sy, sz)``: ``f = (sx (pi/Lx)^2 + sy (pi/Ly)^2 + sz (pi/Lz)^2) u``.
    Returns ``(u, f)``, each ``(D, H, W)``.
    """
    D, H, W = shape
    dx, dy, dz = spacing
    Lx, Ly, Lz = W * dx, H * dy, D * dz
    z = (np.arange(D) + 0.5) * dz
    y = (np.arange(H) + 0.5) * dy
    x = (np.arange(W) + 0.5) * dx
    u = (
        np.cos(np.pi * z / Lz)[:, None, None]
        * np.cos(np.pi * y / Ly)[None, :, None]
        * np.cos(np.pi * x / Lx)[None, None, :]
    )
    sx, sy, sz = sigma_diag
    k2 = sx * (np.pi / Lx) ** 2 + sy * (np.pi / Ly) ** 2 + sz * (np.pi / Lz) ** 2
    return u, k2 * u
