"""Loss and evaluation masks: muscle voxels, spheres around the source poles, and their combination.

The training loss is taken where the surrogate can be right and where the truth is meaningful:

    mask = muscle AND NOT singular

- *muscle*: voxels whose conductivity tensor matches the muscle tensor. The match compares the sorted
  eigenvalues (rotation invariant, so a rotated fibre direction still counts as muscle) with a relative
  tolerance; partial-volume voxels at a tissue boundary have mixed eigenvalues and are left out.
- *singular*: the ball of radius ``r`` base-grid voxels around every pole of the source, where the potential of
  a (near) point current has a singularity that no grid resolves. On a finer grid the radius in voxels grows with
  the resolution factor, so the excluded ball is the same physical region at 1x and 2x.

A loss mask that holds fewer than :data:`MIN_MASK_FRACTION` of the tissue voxels is refused
(:func:`check_coverage`): a muscle tensor that matches nothing (``loss.muscle_sigma`` differing from the corpus's
muscle) leaves nothing to score, and a loss of 0 with an R2 of 1 over no voxels would pass for a perfect fit.

All masks are bool tensors of shape ``(D, H, W)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from fieldlab.errors import InputError

#: Least fraction of the tissue voxels a loss mask must hold. The loss mask of a phantom sample holds about 40-70 %
#: of its tissue (smoke and base grids), so a mask below 1 % means the region rule matched (almost) nothing.
MIN_MASK_FRACTION = 0.01

#: sigma channels (xx, yy, zz, xy, xz, yz) -> position in the symmetric 3x3 matrix
_SYM = ((0, 3, 4), (3, 1, 5), (4, 5, 2))


def sigma_matrix(sigma: torch.Tensor) -> torch.Tensor:
    """``(..., 6)`` channels (xx, yy, zz, xy, xz, yz) -> ``(..., 3, 3)`` symmetric tensors."""
    if sigma.shape[-1] != 6:
        raise InputError(f"sigma has shape {tuple(sigma.shape)}; expected (..., 6) channels (xx, yy, zz, xy, xz, yz)")
    rows = [torch.stack([sigma[..., j] for j in row], dim=-1) for row in _SYM]
    return torch.stack(rows, dim=-2)


def muscle_mask(sigma: torch.Tensor, muscle_sigma: Sequence[float], rtol: float = 1e-3) -> torch.Tensor:
    """Voxels whose conductivity tensor has the muscle tensor's eigenvalues.

    Parameters
    ----------
    sigma
        ``(D, H, W, 6)`` conductivity in S/m.
    muscle_sigma
        The muscle tensor as six channels (xx, yy, zz, xy, xz, yz) in S/m.
    rtol
        ``|lambda_i(voxel) - lambda_i(muscle)| <= rtol * max_i lambda_i(muscle)`` for all sorted eigenvalues.

    Returns
    -------
    torch.Tensor
        ``(D, H, W)`` bool.
    """
    ref = torch.as_tensor(list(muscle_sigma), dtype=torch.float64)
    if ref.shape != (6,):
        raise InputError(f"muscle_sigma = {list(muscle_sigma)}: expected six values (xx, yy, zz, xy, xz, yz)")
    ref_eig = torch.linalg.eigvalsh(sigma_matrix(ref))  # ascending
    eig = torch.linalg.eigvalsh(sigma_matrix(sigma.to(torch.float64)))  # (D, H, W, 3) ascending
    tol = rtol * float(ref_eig.abs().max())
    return (eig - ref_eig).abs().le(tol).all(dim=-1)


def source_poles(f: torch.Tensor) -> torch.Tensor:
    """Voxel indices ``(P, 3)`` of the source poles: the peak of ``f`` and, if ``f`` changes sign, its trough.

    Use the ``source_index`` of a sample file when it is available; this is the fall-back for a bare source.
    """
    poles = [torch.stack(torch.unravel_index(torch.argmax(f), f.shape))]
    if float(f.min()) < 0 < float(f.max()):
        poles.append(torch.stack(torch.unravel_index(torch.argmin(f), f.shape)))
    return torch.stack(poles).to(torch.int64)


def singularity_mask(
    shape: Sequence[int],
    poles: torch.Tensor,
    radius: float,
    scale: Sequence[float] = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Union of balls around every pole: ``sum_a ((i_a - c_a) / (radius * scale_a))^2 <= 1``.

    Parameters
    ----------
    shape
        Grid ``(D, H, W)``.
    poles
        ``(P, 3)`` voxel indices ``(d, h, w)`` of the poles.
    radius
        Radius in base-grid voxels; 0 gives an empty mask.
    scale
        Voxels of this grid per base-grid voxel along (D, H, W) (2 on a 2x grid), so the ball keeps its physical
        size.
    """
    poles = torch.as_tensor(poles).reshape(-1, 3)
    out = torch.zeros(tuple(shape), dtype=torch.bool)
    if radius <= 0:
        return out
    axes = [torch.arange(n, dtype=torch.float64) for n in shape]
    grids = torch.meshgrid(*axes, indexing="ij")
    for pole in poles.tolist():
        dist2 = sum(((g - c) / (radius * s)) ** 2 for g, c, s in zip(grids, pole, scale, strict=True))
        out |= dist2 <= 1.0
    return out


def loss_mask(region: torch.Tensor, singular: torch.Tensor) -> torch.Tensor:
    """The combined mask ``region AND NOT singular``."""
    return region & ~singular


def dominant_tensor(sigma: torch.Tensor, labels: torch.Tensor, label: int) -> list[float] | None:
    """The most frequent tensor ``(6,)`` among voxels of ``label``: the pure tissue's own tensor (partial volumes
    are mixtures, each rarer than the pure value); ``None`` when no voxel carries the label.

    Parameters
    ----------
    sigma
        ``(D, H, W, 6)`` conductivity in S/m.
    labels
        ``(D, H, W)`` tissue labels (:data:`fieldlab.potential.schema.TISSUES`).
    label
        The label of interest.

    Examples
    --------
    >>> sigma = torch.tensor([[0.2, 0.2, 1.0, 0, 0, 0]] * 3 + [[0.1, 0.1, 0.5, 0, 0, 0]]).reshape(1, 1, 4, 6)
    >>> dominant_tensor(sigma, torch.tensor([[[3, 3, 3, 3]]]), 3) == [float(v) for v in sigma[0, 0, 0]]
    True
    """
    rows = sigma[labels == label]  # (N, 6)
    if rows.shape[0] == 0:
        return None
    values, counts = torch.unique(rows, dim=0, return_counts=True)
    return values[int(torch.argmax(counts))].tolist()


def check_coverage(mask: torch.Tensor, tissue: torch.Tensor, where: str, rule: Callable[[], str]) -> None:
    """Refuse a loss mask that holds fewer than :data:`MIN_MASK_FRACTION` of the tissue voxels.

    Parameters
    ----------
    mask, tissue
        ``(D, H, W)`` bool loss mask and tissue mask.
    where
        The sample (its file) named in the message.
    rule
        Returns how the mask was built and what to change, appended to the message; called only when the check
        fails (it may scan the sample).

    Raises
    ------
    InputError
        ``mask.sum() < MIN_MASK_FRACTION * tissue.sum()`` (always for an empty mask).
    """
    n, n_tissue = int(mask.sum()), int(tissue.sum())
    if n == 0 or n < MIN_MASK_FRACTION * n_tissue:
        raise InputError(
            f"{where}: the loss mask holds {n} of {n_tissue} tissue voxels, below the floor of "
            f"{MIN_MASK_FRACTION:.0%} (too few voxels to score the prediction on); {rule()}"
        )
