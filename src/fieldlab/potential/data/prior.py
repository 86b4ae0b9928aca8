"""The analytic prior of the operator: the free-space potential of each sample's source poles.

Inside muscle, far from fat, bone and skin, the potential of a pole of current ``I_p`` at ``r_p`` is close to that
of the same pole in an infinite medium of the local tensor ``sigma_p`` (:func:`~fieldlab.potential.physics.analytic.
point_source_potential`):

    prior(r) = sum_p  I_p erf(rho_p / (sqrt2 w_p)) / (4 pi sqrt(det sigma_p) rho_p),
    rho_p^2 = (r - r_p)^T sigma_p^-1 (r - r_p),   w_p = core_m / det(sigma_p)^(1/6)

then shifted to the corpus gauge (zero mean over tissue voxels) and set to zero in air. The Gaussian core ``w_p`` (an
isotropic physical length ``core_m`` mapped to the sigma metric) keeps the prior finite at the pole; the loss mask
excludes that ball anyway. Everything comes from the sample itself: ``source_point`` (box-centred, metres), the
current of each pole (the source integrated over the voxels nearer to it than to any other pole), and the tensor at
``source_index``. The prior is exact for one pole in an infinite homogeneous medium; the operator learns the rest
(the insulating skin/air boundary, fat, bone), which is smooth in muscle, at any resolution.
"""

from __future__ import annotations

import numpy as np

from fieldlab.errors import InputError
from fieldlab.potential.physics.analytic import point_source_potential, tensor
from fieldlab.potential.physics.fem.transfer import gauge
from fieldlab.potential.physics.phantom import voxel_axes
from fieldlab.potential.schema import PotentialSample


def voxel_points(shape: tuple[int, int, int], spacing: np.ndarray) -> np.ndarray:
    """``(D, H, W, 3)`` physical (x, y, z) of voxel centres in a box centred on the origin (as ``source_point``)."""
    D, H, W = shape
    dx, dy, dz = (float(s) for s in spacing)
    zz, yy, xx = np.meshgrid(*voxel_axes(shape, (W * dx, H * dy, D * dz)), indexing="ij")
    return np.stack([xx, yy, zz], axis=-1)


def pole_currents(source: np.ndarray, points: np.ndarray, poles: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Current (A) of each pole: ``sum f dV`` over the voxels nearer to that pole than to any other."""
    dist = np.stack([np.sum((points - p) ** 2, axis=-1) for p in poles])  # (P, D, H, W)
    nearest = np.argmin(dist, axis=0)
    volume = float(np.prod(np.asarray(spacing, dtype=np.float64)))
    f = np.asarray(source, dtype=np.float64)
    return np.array([f[nearest == k].sum() * volume for k in range(len(poles))])


def free_space_prior(sample: PotentialSample, core_m: float) -> np.ndarray:
    """``(D, H, W)`` float64 prior potential in volts (see the module docstring); zero in air."""
    points = voxel_points(sample.shape, sample.spacing)
    poles = np.asarray(sample.source_point, dtype=np.float64).reshape(-1, 3)
    currents = pole_currents(sample.source, points, poles, sample.spacing)
    prior = np.zeros(sample.shape)
    for pole, current, index in zip(poles, currents, np.asarray(sample.source_index), strict=True):
        sigma = tensor(sample.sigma[tuple(int(i) for i in index)])
        eig = np.linalg.eigvalsh(sigma)
        if eig[0] <= 0:
            raise InputError(
                f"source pole at voxel {index.tolist()}: conductivity {np.round(eig, 6).tolist()} S/m; "
                "expected a positive-definite tensor (a pole inside tissue)"
            )
        width = core_m / float(np.prod(eig)) ** (1.0 / 6.0)
        prior += point_source_potential(points, pole, float(current), sigma, width=width)
    return gauge(prior, sample.mask)
