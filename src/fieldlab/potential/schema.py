"""Conventions of the potential corpus, fixed for the whole project and written down once, here.

Axes and units
--------------
- Volumes are arrays indexed ``(D, H, W)`` = physical ``(z, y, x)``; ``z`` is the limb axis. Grids are built with
  ``indexing='ij'`` and values sit at voxel centres.
- ``sigma`` is ``(D, H, W, 6)`` in S/m with channels :data:`SIGMA_CHANNELS` = (xx, yy, zz, xy, xz, yz); zero in air.
- Model coordinate channels are (X, Y, Z) (:data:`COORD_CHANNELS`), each a ``(D, H, W)`` meshgrid of the
  normalised cube ``data.coord_range`` (default [-1, 1]).
- ``spacing`` is ``(dx, dy, dz)`` in metres (note: x first, unlike the array axes).
- ``u`` (the potential Phi) in volts, zero in air; ``source`` the current density in A/m^3 per voxel.

One sample file ``NNNN.npz`` holds :data:`SAMPLE_KEYS`; float arrays are float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fieldlab.core.io import load_npz
from fieldlab.errors import InputError

#: Array axes of every volume, and the physical axis each one is.
AXES = ("D", "H", "W")
PHYSICAL_AXES = ("z", "y", "x")
#: Channel order of the symmetric conductivity tensor.
SIGMA_CHANNELS = ("xx", "yy", "zz", "xy", "xz", "yz")
#: Channel order of the coordinate inputs.
COORD_CHANNELS = ("X", "Y", "Z")

#: Tissue labels of the ``tissue`` array.
TISSUES = {"air": 0, "skin": 1, "fat": 2, "muscle": 3, "bone": 4}

#: Required keys of a sample file and their (ndim, dtype kind) -- shapes are checked against ``u``.
SAMPLE_KEYS = {
    "sigma": "(D,H,W,6) float32 S/m",
    "source": "(D,H,W) float32 A/m^3",
    "mask": "(D,H,W) bool tissue mask",
    "tissue": "(D,H,W) uint8 labels (see TISSUES)",
    "u": "(D,H,W) float32 V",
    "spacing": "(3,) float32 (dx, dy, dz) m",
    "source_point": "(P,3) float32 pole peaks (x, y, z) m",
    "source_index": "(P,3) int64 pole peaks as voxel index (d, h, w)",
}


@dataclass(frozen=True)
class PotentialSample:
    """One solved sample: conductivity, source, tissue, potential and where the source poles sit."""

    sigma: np.ndarray
    source: np.ndarray
    mask: np.ndarray
    tissue: np.ndarray
    u: np.ndarray
    spacing: np.ndarray
    source_point: np.ndarray
    source_index: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.u.shape)  # type: ignore[return-value]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays in file dtypes (float32 fields, bool mask, uint8 labels, int64 indices)."""
        return {
            "sigma": self.sigma.astype(np.float32),
            "source": self.source.astype(np.float32),
            "mask": self.mask.astype(bool),
            "tissue": self.tissue.astype(np.uint8),
            "u": self.u.astype(np.float32),
            "spacing": np.asarray(self.spacing, dtype=np.float32),
            "source_point": np.asarray(self.source_point, dtype=np.float32).reshape(-1, 3),
            "source_index": np.asarray(self.source_index, dtype=np.int64).reshape(-1, 3),
        }


def validate_arrays(arrays: dict[str, np.ndarray], where: str) -> PotentialSample:
    """Check a mapping of arrays against the schema; raise :class:`InputError` naming ``where`` and the key."""
    missing = [k for k in SAMPLE_KEYS if k not in arrays]
    if missing:
        raise InputError(f"{where}: missing key(s) {', '.join(missing)}; expected {', '.join(SAMPLE_KEYS)}")
    u = np.asarray(arrays["u"])
    if u.ndim != 3 or min(u.shape) < 1:
        raise InputError(f"{where}: u has shape {u.shape}; expected (D, H, W), each at least 1")
    shape = u.shape
    expect = {
        "sigma": (*shape, 6),
        "source": shape,
        "mask": shape,
        "tissue": shape,
        "spacing": (3,),
    }
    for key, want in expect.items():
        got = np.shape(arrays[key])
        if got != want:
            raise InputError(f"{where}: {key} has shape {got}; expected {want} ({SAMPLE_KEYS[key]})")
    for key in ("source_point", "source_index"):
        got = np.shape(arrays[key])
        if len(got) != 2 or got[1] != 3 or got[0] < 1:
            raise InputError(f"{where}: {key} has shape {got}; expected (P, 3) with P >= 1")
    for key in ("sigma", "source", "u", "spacing", "source_point"):
        arr = np.asarray(arrays[key])
        if arr.dtype.kind not in "fiu":
            raise InputError(f"{where}: {key} has dtype {arr.dtype}; expected a floating-point array")
        if not np.all(np.isfinite(arr)):
            raise InputError(f"{where}: {key} holds non-finite values")
    mask = np.asarray(arrays["mask"])
    if mask.dtype.kind != "b" and not (mask.dtype.kind in "iu" and np.all((mask == 0) | (mask == 1))):
        raise InputError(f"{where}: mask has dtype {mask.dtype}; expected a boolean tissue mask (or 0/1 integers)")
    if np.any(np.asarray(arrays["spacing"]) <= 0):
        raise InputError(f"{where}: spacing = {np.asarray(arrays['spacing']).tolist()}; expected positive metres")
    tissue = np.asarray(arrays["tissue"])
    if tissue.dtype.kind not in "iu" or tissue.min() < 0 or tissue.max() > max(TISSUES.values()):
        raise InputError(f"{where}: tissue labels must be integers in 0..{max(TISSUES.values())} ({TISSUES})")
    idx = np.asarray(arrays["source_index"])
    if idx.dtype.kind not in "iu" or np.any(idx < 0) or np.any(idx >= np.asarray(shape)):
        raise InputError(f"{where}: source_index {idx.tolist()} lies outside the grid {shape}")
    sample = PotentialSample(**{k: np.asarray(arrays[k]) for k in SAMPLE_KEYS})
    return sample


def load_sample(path: str | Path) -> PotentialSample:
    """Read and validate one ``.npz`` sample file; every problem is one :class:`InputError` naming ``path``."""
    arrays = load_npz(path, what="a potential sample (" + ", ".join(SAMPLE_KEYS) + ")")
    return validate_arrays(arrays, str(path))


def cell_centres(n: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """Voxel-centre coordinates of ``n`` cells tiling ``[lo, hi]``: ``lo + (i + 1/2) (hi - lo) / n``."""
    return lo + (np.arange(n) + 0.5) * (hi - lo) / n


def refinement(shape: tuple[int, ...], grid: tuple[int, ...]) -> tuple[int, int, int] | None:
    """The whole refinement of a sample grid ``shape`` over a coarser ``grid`` (both ``(D, H, W)``): the factor
    ``shape[i] / grid[i]`` along each axis when every one is a whole number (1 on an axis the two grids share), else
    ``None``.

    Examples
    --------
    >>> refinement((192, 96, 96), (96, 48, 48)), refinement((16, 8, 8), (4, 8, 2))
    ((2, 2, 2), (4, 1, 4))
    >>> refinement((16, 8, 8), (16, 8, 8)), refinement((16, 8, 8), (3, 2, 2)), refinement((8, 4, 4), (16, 8, 8))
    ((1, 1, 1), None, None)
    """
    s = tuple(int(n) for n in shape)
    g = tuple(int(n) for n in grid)
    if len(s) != 3 or len(g) != 3 or min(g) < 1 or any(a % b for a, b in zip(s, g, strict=True)):
        return None
    factor = tuple(a // b for a, b in zip(s, g, strict=True))
    return factor if min(factor) >= 1 else None  # type: ignore[return-value]
