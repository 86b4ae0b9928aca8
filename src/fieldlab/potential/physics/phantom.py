"""The parametric limb phantom: continuous geometry, partial-volume rasterisation and a continuous bipolar source.

Geometry (physical metres, limb axis z, centred box ``box_m = (Lx, Ly, Lz)``)
--------------------------------------------------------------------------
The limb cross-section at height ``z`` is an ellipse with elliptical radius

    s(x, y) = sqrt((x / (1 + e))^2 + (y / (1 - e))^2),      R(z) = R0 (1 + taper * 2 z / Lz),

and the tissues are nested shells in ``s``: skin for ``R - t_skin <= s < R``, fat for
``R - t_skin - t_fat <= s < R - t_skin``, muscle inside, and one or two bones (circular cylinders parallel to z of
radius ``r_b`` centred at ``(x_b, y_b)``) embedded in the muscle; air for ``s >= R``.

Partial volumes
---------------
Each voxel is sub-sampled on an ``n^3`` regular lattice; the fraction ``phi_k`` of each tissue ``k`` gives

    mask   = phi_tissue >= 1/2            (phi_tissue = 1 - phi_air),
    sigma  = sum_k phi_k sigma_k / phi_tissue   (arithmetic (Voigt) mix of the tissue tensors; air excluded),
    tissue = argmax_k phi_k among the tissues (label of the dominant tissue).

A voxel that is purely muscle therefore carries exactly the muscle tensor. The base grid uses ``n`` sub-samples per
axis and a grid refined by ``f`` uses ``max(2, ceil(n / f))``, so both sample (nearly) the same physical lattice.

Source
------
Two poles in the muscle, ``+I`` at ``p+`` and ``-I`` at ``p-``, each the Gaussian
``g(x) = exp(-|x - p|^2 / (2 w^2))`` of fixed physical width ``w`` sampled at voxel centres, restricted to tissue and
renormalised so that ``sum_voxels f dV = +-I`` exactly: the same continuous source at every resolution.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from fieldlab.potential.schema import TISSUES, cell_centres

#: Tissue order of the fraction arrays (labels from ``TISSUES``).
TISSUE_ORDER = ("skin", "fat", "muscle", "bone")


@dataclass(frozen=True)
class LimbParams:
    """One limb geometry and source, all lengths in metres; ``bones`` is a tuple of (x, y, radius)."""

    box_m: tuple[float, float, float]
    radius: float
    ellipticity: float
    taper: float
    skin: float
    fat: float
    bones: tuple[tuple[float, float, float], ...]
    poles: tuple[tuple[float, float, float], tuple[float, float, float]]  # (+I pole, -I pole), (x, y, z)
    current: float
    width: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Conductivities:
    """Tissue tensors in S/m, channels (xx, yy, zz, xy, xz, yz)."""

    skin: tuple[float, ...]
    fat: tuple[float, ...]
    muscle: tuple[float, ...]
    bone: tuple[float, ...]

    def table(self) -> np.ndarray:
        """``(4, 6)`` tensors in :data:`TISSUE_ORDER`."""
        return np.array([self.skin, self.fat, self.muscle, self.bone], dtype=np.float64)


@dataclass(frozen=True)
class Rasterised:
    """A limb on a voxel grid: (D, H, W, 6) sigma, (D, H, W) source, bool mask, uint8 tissue, spacing (dx, dy, dz)."""

    sigma: np.ndarray
    source: np.ndarray
    mask: np.ndarray
    tissue: np.ndarray
    spacing: tuple[float, float, float]
    source_point: np.ndarray  # (2, 3) (x, y, z) m
    source_index: np.ndarray  # (2, 3) (d, h, w)


def isotropic(value: float) -> tuple[float, ...]:
    """The tensor ``value * I`` in channel order (xx, yy, zz, xy, xz, yz)."""
    return (value, value, value, 0.0, 0.0, 0.0)


def rotate_fibre(tensor: tuple[float, ...], tilt_rad: float, azimuth_rad: float) -> tuple[float, ...]:
    """``R S R^T`` for the rotation taking z to the fibre direction (tilted by ``tilt`` towards ``azimuth``)."""
    s = np.array(
        [[tensor[0], tensor[3], tensor[4]], [tensor[3], tensor[1], tensor[5]], [tensor[4], tensor[5], tensor[2]]]
    )
    axis = np.array([-math.sin(azimuth_rad), math.cos(azimuth_rad), 0.0])  # rotation axis in the x-y plane
    kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + math.sin(tilt_rad) * kx + (1 - math.cos(tilt_rad)) * kx @ kx  # Rodrigues
    r = rot @ s @ rot.T
    return (r[0, 0], r[1, 1], r[2, 2], r[0, 1], r[0, 2], r[1, 2])


def label_points(p: LimbParams, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Tissue label (``TISSUES``) of physical points; arrays broadcast together."""
    R = p.radius * (1.0 + p.taper * 2.0 * z / p.box_m[2])
    s = np.sqrt((x / (1.0 + p.ellipticity)) ** 2 + (y / (1.0 - p.ellipticity)) ** 2)
    lab = np.full(np.broadcast_shapes(x.shape, y.shape, z.shape), TISSUES["air"], dtype=np.uint8)
    lab = np.where(s < R, TISSUES["skin"], lab)
    lab = np.where(s < R - p.skin, TISSUES["fat"], lab)
    lab = np.where(s < R - p.skin - p.fat, TISSUES["muscle"], lab)
    for bx, by, br in p.bones:
        lab = np.where((x - bx) ** 2 + (y - by) ** 2 < br**2, TISSUES["bone"], lab)
    return lab


def voxel_axes(grid: tuple[int, int, int], box_m: tuple[float, float, float]) -> tuple[np.ndarray, ...]:
    """Voxel-centre coordinates (z, y, x) in metres along the D, H, W axes of a centred box."""
    D, H, W = grid
    Lx, Ly, Lz = box_m
    return cell_centres(D, -Lz / 2, Lz / 2), cell_centres(H, -Ly / 2, Ly / 2), cell_centres(W, -Lx / 2, Lx / 2)


def tissue_fractions(p: LimbParams, grid: tuple[int, int, int], subsamples: int) -> np.ndarray:
    """``(5, D, H, W)`` fraction of each label (air, skin, fat, muscle, bone) from ``n^3`` sub-samples per voxel."""
    D, H, W = grid
    Lx, Ly, Lz = p.box_m
    n = subsamples
    sub = (np.arange(n) + 0.5) / n - 0.5  # sub-sample offsets in voxel units
    zc, yc, xc = voxel_axes(grid, p.box_m)
    xs = (xc[:, None] + sub[None, :] * Lx / W).ravel()  # (W * n,)
    ys = (yc[:, None] + sub[None, :] * Ly / H).ravel()
    labels = len(TISSUES)
    frac = np.zeros((labels, D, H, W))
    # the voxel (h, w) of every sub-sample of a plane, times the number of labels: one bincount counts them all
    voxel = (np.arange(H)[None, :, None, None, None] * W + np.arange(W)[None, None, None, :, None]) * labels
    voxel = np.broadcast_to(voxel, (n, H, n, W, n)).ravel()
    for d in range(D):
        zs = zc[d] + sub * Lz / D
        lab = label_points(p, xs[None, None, :], ys[None, :, None], zs[:, None, None])  # (n, H n, W n)
        counts = np.bincount(voxel + lab.ravel(), minlength=labels * H * W).reshape(H, W, labels)
        frac[:, d] = np.moveaxis(counts, -1, 0) / float(n**3)  # count / n^3: the bytes of the mean of (lab == k)
    return frac


def bipole_source(p: LimbParams, grid: tuple[int, int, int], mask: np.ndarray) -> np.ndarray:
    """Current density (A/m^3) of the two Gaussian poles, each renormalised to carry exactly +-I over the tissue."""
    D, H, W = grid
    zc, yc, xc = voxel_axes(grid, p.box_m)
    vol = p.box_m[0] * p.box_m[1] * p.box_m[2] / (D * H * W)
    f = np.zeros(grid)
    for sign, (px, py, pz) in zip((1.0, -1.0), p.poles, strict=True):
        g = (
            np.exp(-((zc - pz) ** 2) / (2 * p.width**2))[:, None, None]
            * np.exp(-((yc - py) ** 2) / (2 * p.width**2))[None, :, None]
            * np.exp(-((xc - px) ** 2) / (2 * p.width**2))[None, None, :]
        )
        g = np.where(mask, g, 0.0)
        f += sign * p.current * g / (g.sum() * vol)
    return f


def rasterise(p: LimbParams, cond: Conductivities, grid: tuple[int, int, int], subsamples: int = 4) -> Rasterised:
    """Sample the limb on ``grid`` = (D, H, W) with partial volumes (see module notes)."""
    D, H, W = grid
    Lx, Ly, Lz = p.box_m
    frac = tissue_fractions(p, grid, subsamples)
    tissue_frac = 1.0 - frac[TISSUES["air"]]
    mask = tissue_frac >= 0.5
    table = cond.table()  # (4, 6) in TISSUE_ORDER
    ks = [TISSUES[t] for t in TISSUE_ORDER]
    mix = np.einsum("kdhw,kc->dhwc", frac[ks], table)  # k tissue, c sigma channel
    sigma = np.where(mask[..., None], mix / np.maximum(tissue_frac, 1e-12)[..., None], 0.0)
    pure = frac[ks].max(axis=0) == 1.0  # exact tensors where one tissue fills the voxel (no round-off of the mix)
    idx = np.argmax(frac[ks], axis=0)
    sigma[pure] = table[idx[pure]]
    tissue = np.where(mask, np.array(ks, dtype=np.uint8)[idx], TISSUES["air"]).astype(np.uint8)
    source = bipole_source(p, grid, mask)
    spacing = (Lx / W, Ly / H, Lz / D)
    points, index = pole_voxels(p, grid)
    return Rasterised(sigma, source, mask, tissue, spacing, points, index)


def pole_voxels(p: LimbParams, grid: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(2, 3)`` pole positions (x, y, z) in metres and the ``(2, 3)`` voxel index (d, h, w) holding each."""
    D, H, W = grid
    Lx, Ly, Lz = p.box_m
    spacing = (Lx / W, Ly / H, Lz / D)
    points = np.array(p.poles, dtype=np.float64)  # (2, 3) (x, y, z)
    index = np.stack(
        [
            np.clip(np.floor((points[:, 2] + Lz / 2) / spacing[2]), 0, D - 1),
            np.clip(np.floor((points[:, 1] + Ly / 2) / spacing[1]), 0, H - 1),
            np.clip(np.floor((points[:, 0] + Lx / 2) / spacing[0]), 0, W - 1),
        ],
        axis=1,
    ).astype(np.int64)
    return points, index


def with_source(r: Rasterised, p: LimbParams) -> Rasterised:
    """The rasterised limb ``r`` carrying the bipole of ``p`` instead (same geometry; only the source changes)."""
    grid = r.mask.shape
    points, index = pole_voxels(p, grid)
    return replace(r, source=bipole_source(p, grid, r.mask), source_point=points, source_index=index)
