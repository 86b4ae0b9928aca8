"""The potential corpus as a torch Dataset: one solved sample -> the operator's inputs, target and masks.

Each item is a dict of CPU tensors (the trainer moves them to its device):

=========== ================= ============================================================
key         shape             meaning
=========== ================= ============================================================
sigma       (6, D, H, W)      conductivity in S/m, channels (xx, yy, zz, xy, xz, yz); 0 in air
f           (1, D, H, W)      source ``f / f_scale`` (see :mod:`fieldlab.potential.models.scaling`)
coords      (3, D, H, W)      normalised (X, Y, Z) at voxel centres of ``coord_range``, ``indexing='ij'``
spacing     (3,)              (dx, dy, dz) in metres
phi         (1, D, H, W)      potential ``u / u_scale``
mask        (1, D, H, W)      loss mask: region (muscle or tissue) and not near a source pole
tissue      (1, D, H, W)      tissue mask (all non-air voxels)
prior       (1, D, H, W)      physics prior ``/ u_scale``: free-space (with ``prior_core_m``) or the cached
                              coarse_fem one (with ``prior_cache``; :mod:`fieldlab.potential.data.priors`)
=========== ================= ============================================================

Any resolution works: coordinates are rebuilt from the grid shape, and the singularity ball is scaled by
``reference_spacing / spacing`` so that it covers the same physical region as on the training grid.

A sample whose loss mask holds fewer than :data:`fieldlab.potential.data.masking.MIN_MASK_FRACTION` (1 %) of its
tissue voxels is an :class:`~fieldlab.errors.InputError` naming the file: with ``region = "muscle"`` this is what
a ``loss.muscle_sigma`` that differs from the corpus's muscle tensor (``physics.conductivity.muscle`` when the
corpus was generated) produces, and the message quotes the tensor the sample's muscle-labelled voxels carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fieldlab.config.potential import MUSCLE_SIGMA
from fieldlab.errors import InputError
from fieldlab.potential.data import masking
from fieldlab.potential.data.prior import free_space_prior
from fieldlab.potential.data.priors import PriorCache, cache_for
from fieldlab.potential.data.symmetry import Symmetry, apply_symmetry, can_swap_xy
from fieldlab.potential.models.scaling import FieldScaler
from fieldlab.potential.schema import TISSUES, PotentialSample, cell_centres, load_sample


def split_files(root: str | Path, split: str) -> list[Path]:
    """Sorted ``NNNN.npz`` files of ``root/split``; a missing or empty split is an :class:`InputError`."""
    folder = Path(root) / split
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise InputError(f"{folder}: no .npz samples found (run the prepare stage first)")
    return files


def coordinate_grid(shape: Sequence[int], coord_range: Sequence[float] = (-1.0, 1.0)) -> torch.Tensor:
    """``(3, D, H, W)`` channels (X, Y, Z) of voxel centres; X varies along W, Y along H, Z along D."""
    lo, hi = float(coord_range[0]), float(coord_range[1])
    z, y, x = (torch.as_tensor(cell_centres(n, lo, hi), dtype=torch.float32) for n in shape)
    zz, yy, xx = torch.meshgrid(z, y, x, indexing="ij")
    return torch.stack([xx, yy, zz])


class PotentialDataset(Dataset):
    """Samples of one split of the corpus, scaled and masked for the operator.

    Parameters
    ----------
    files
        Sample files (see :func:`split_files`).
    scaler
        The transform fitted on the training split.
    coord_range
        ``data.coord_range``.
    singularity_radius
        ``loss.singularity_radius`` in base-grid voxels.
    region
        ``"muscle"`` (tensor match) or ``"tissue"``.
    muscle_sigma, muscle_rtol
        The muscle tensor and match tolerance (``loss.muscle_sigma``, ``loss.muscle_rtol``); the tensor must be the
        corpus's muscle tensor, or the mask is (nearly) empty and the item is refused.
    reference_spacing
        (dx, dy, dz) of the training grid; ``None`` uses each sample's own spacing (scale 1).
    prior_core_m
        Core width (m) of the analytic prior (``model.prior.core_m``); ``None`` leaves the ``prior`` key out.
    prior_cache
        Cached coarse_fem priors (:class:`~fieldlab.potential.data.priors.PriorCache`): each item's prior is read
        from it (``prior_core_m`` is then ignored); a missing cache file is an :class:`InputError`.
    augment
        Return each item under a random symmetry of the box (:mod:`fieldlab.potential.data.symmetry`; training only).
    cache
        Keep decoded items in memory (the corpus is small; decompression dominates otherwise).
    """

    def __init__(
        self,
        files: Sequence[str | Path],
        scaler: FieldScaler,
        coord_range: Sequence[float] = (-1.0, 1.0),
        singularity_radius: float = 3.0,
        region: str = "muscle",
        muscle_sigma: Sequence[float] = MUSCLE_SIGMA,
        muscle_rtol: float = 1e-3,
        reference_spacing: Sequence[float] | None = None,
        prior_core_m: float | None = None,
        prior_cache: PriorCache | None = None,
        augment: bool = False,
        cache: bool = True,
    ) -> None:
        if region not in ("muscle", "tissue"):
            raise InputError(f"loss.region = {region!r}: expected 'muscle' or 'tissue'")
        self.files = [Path(f) for f in files]
        self.scaler = scaler
        self.coord_range = tuple(coord_range)
        self.singularity_radius = float(singularity_radius)
        self.region = region
        self.muscle_sigma = tuple(muscle_sigma)
        self.muscle_rtol = float(muscle_rtol)
        self.reference_spacing = None if reference_spacing is None else tuple(float(s) for s in reference_spacing)
        self.prior_core_m = None if prior_core_m is None else float(prior_core_m)
        self.prior_cache = prior_cache
        self.augment = bool(augment)
        self._cache: dict[int, dict[str, torch.Tensor]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.files)

    def sample(self, index: int) -> PotentialSample:
        """The raw, validated sample (physical units)."""
        return load_sample(self.files[index])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._cache is not None and index in self._cache:
            item = self._cache[index]
        else:
            s = self.sample(index)
            cached = None if self.prior_cache is None else self.prior_cache.load(self.files[index], s)
            item = self.build_item(s, where=str(self.files[index]), prior=cached)
            if self._cache is not None:
                self._cache[index] = item
        if self.augment:
            item = apply_symmetry(item, Symmetry.random(allow_swap=can_swap_xy(item)))
        return item

    def build_item(
        self, s: PotentialSample, where: str = "sample", prior: np.ndarray | None = None
    ) -> dict[str, torch.Tensor]:
        """Inputs, target and masks of one sample (see the module table); ``where`` names it in errors.

        ``prior`` (D, H, W) in volts (a cached coarse_fem prior) is used as given; without it the free-space prior
        is computed when ``prior_core_m`` is set.

        Raises
        ------
        InputError
            The loss mask holds fewer than ``MIN_MASK_FRACTION`` of the tissue voxels.
        """
        shape = s.shape
        sigma = torch.from_numpy(np.ascontiguousarray(s.sigma, dtype=np.float32))  # (D, H, W, 6)
        tissue = torch.from_numpy(s.mask.astype(bool))
        if self.region == "muscle":
            region = masking.muscle_mask(sigma, self.muscle_sigma, self.muscle_rtol) & tissue
        else:
            region = tissue
        spacing = torch.as_tensor(np.asarray(s.spacing, dtype=np.float32))
        ref = spacing.tolist() if self.reference_spacing is None else self.reference_spacing
        # voxels of this grid per training-grid voxel along (D, H, W) = (z, y, x); spacing is (dx, dy, dz)
        scale = (ref[2] / float(spacing[2]), ref[1] / float(spacing[1]), ref[0] / float(spacing[0]))
        singular = masking.singularity_mask(shape, torch.from_numpy(s.source_index), self.singularity_radius, scale)
        mask = masking.loss_mask(region, singular)
        masking.check_coverage(mask, tissue, where, lambda: self._coverage_rule(sigma, s))
        f = torch.from_numpy(np.asarray(s.source, dtype=np.float32))
        u = torch.from_numpy(np.asarray(s.u, dtype=np.float32))
        item = {
            "sigma": sigma.permute(3, 0, 1, 2).contiguous(),  # (D, H, W, 6) -> (6, D, H, W)
            "f": self.scaler.scale_source(f)[None],
            "coords": coordinate_grid(shape, self.coord_range),
            "spacing": spacing,
            "phi": self.scaler.scale_potential(u)[None],
            "mask": mask[None],
            "tissue": tissue[None],
        }
        if prior is None and self.prior_core_m is not None:
            prior = free_space_prior(s, self.prior_core_m)
        if prior is not None:
            item["prior"] = self.scaler.scale_potential(torch.from_numpy(np.asarray(prior).astype(np.float32)))[None]
        return item

    def _coverage_rule(self, sigma: torch.Tensor, s: PotentialSample) -> str:
        """The mask's rule and its likely cause, for the message of :func:`masking.check_coverage`."""
        balls = f"minus balls of loss.singularity_radius = {self.singularity_radius:g} voxels around the poles"
        if self.region == "tissue":
            return f"loss.region = tissue {balls}; lower loss.singularity_radius"
        found = masking.dominant_tensor(sigma, torch.from_numpy(s.tissue), TISSUES["muscle"])
        carried = "none" if found is None else "[" + ", ".join(f"{v:.6g}" for v in found) + "]"
        return (
            f"loss.region = muscle: voxels whose tensor has the eigenvalues of loss.muscle_sigma = "
            f"{list(self.muscle_sigma)} within loss.muscle_rtol = {self.muscle_rtol:g}, {balls}; the voxels labelled "
            f"muscle carry {carried}: set loss.muscle_sigma to the corpus's muscle tensor (physics.conductivity.muscle)"
        )


def dataset_options(
    cfg: Any, scaler: FieldScaler, reference_spacing: Sequence[float], prior: Any = None
) -> dict[str, Any]:
    """Keyword arguments of :class:`PotentialDataset` from the ``data`` and ``loss`` sections of a config.

    ``prior`` is the model's ``PriorConfig`` (default ``cfg.model.prior``; a trained model passes its own).
    """
    prior = cfg.model.prior if prior is None else prior
    return {
        "scaler": scaler,
        "coord_range": cfg.data.coord_range,
        "singularity_radius": cfg.loss.singularity_radius,
        "region": cfg.loss.region,
        "muscle_sigma": cfg.loss.muscle_sigma,
        "muscle_rtol": cfg.loss.muscle_rtol,
        "reference_spacing": [float(s) for s in reference_spacing],
        "prior_core_m": prior.core_m if prior.kind == "free_space" else None,
        "prior_cache": cache_for(prior),
    }


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Move every tensor of a batch to ``device`` (non-blocking where the memory is pinned)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
