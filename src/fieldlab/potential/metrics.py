"""Masked losses and error measures for fields ``(B, 1, D, H, W)`` with masks ``(B, 1, D, H, W)`` (bool).

Every measure is computed per sample over the voxels of its mask and returned as a ``(B,)`` tensor, except the
training losses, which are averaged over the batch. A measure over an empty mask is NaN, never 0 or 1: an empty
set has no error, and reporting a perfect score for it would hide a mask that matched nothing (the dataset refuses
such masks, :mod:`fieldlab.potential.data.loader`; NaN carries any that get through into every mean).

- masked MSE:        ``MSE_b = sum_m (p - t)^2 / |m|``
- relative L2:       ``rel_b = ||p - t||_m / ||t||_m``
- R2:                ``R2_b = 1 - SS_res / SS_tot`` with ``SS_tot = sum_m (t - mean_m t)^2``
- max error:         ``max_m |p - t|``
- gradient loss:     ``G_b = sum_m |E_p - E_t|^2 / sum_m |E_t|^2`` with ``E = -grad phi`` from central differences
  (:func:`torch.gradient`, the true spacing in metres, one-sided at the grid faces). Normalising by the true
  field makes the term independent of the units and of the grid, so ``lambda_grad`` keeps its meaning at 2x.
"""

from __future__ import annotations

import numpy as np
import torch

from fieldlab.errors import InputError


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)  # (B, 1, D, H, W) -> (B, D*H*W)


def _where_any(mask: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` where the sample's mask ``(B, D*H*W)`` holds a voxel, NaN where it is empty."""
    return torch.where(mask.any(1), value, torch.full_like(value, float("nan")))


def _check(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
    if pred.shape != target.shape or mask.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(pred.shape)}, target {tuple(target.shape)} and mask {tuple(mask.shape)}: "
            "expected identical shapes (B, 1, D, H, W)"
        )


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error over the mask, ``(B,)``; NaN for an empty mask.

    Examples
    --------
    >>> p, t = torch.zeros(2, 1, 1, 1, 2), torch.tensor([1.0, 3.0]).expand(2, 1, 1, 1, 2)
    >>> masked_mse(p, t, torch.tensor([[True, True], [False, False]]).reshape(2, 1, 1, 1, 2))
    tensor([5., nan])
    """
    _check(pred, target, mask)
    m = _flat(mask).to(pred.dtype)
    sq = _flat((pred - target) ** 2) * m
    # the clamp keeps the division (and its gradient) finite for an empty mask, whose value is then replaced by NaN
    return _where_any(_flat(mask), sq.sum(1) / m.sum(1).clamp_min(1.0))


def relative_l2(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """Per-sample ``||p - t||_m / ||t||_m``, ``(B,)``; NaN for an empty mask."""
    _check(pred, target, mask)
    m = _flat(mask).to(pred.dtype)
    num = (_flat((pred - target) ** 2) * m).sum(1).sqrt()
    den = (_flat(target**2) * m).sum(1).sqrt()
    return _where_any(_flat(mask), num / den.clamp_min(eps))


def _one_field(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, ...]:
    """One field's NumPy arrays as a batch of one ``(1, 1, ...)`` in float64; an empty mask or a truth that is zero
    over it is an :class:`InputError` (a measure relative to nothing is no measure)."""
    m = torch.from_numpy(np.asarray(mask, dtype=bool))
    t = torch.as_tensor(np.asarray(truth, dtype=np.float64))
    if not bool(m.any()) or not bool(t[m].any()):
        raise InputError("relative L2 over an empty mask or a zero field: nothing to be relative to")
    p = torch.as_tensor(np.asarray(pred, dtype=np.float64))
    return p[None, None], t[None, None], m[None, None]


def field_relative_l2(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """:func:`relative_l2` of one field (NumPy arrays, any shape, float64), as a float.

    Raises
    ------
    InputError
        The mask is empty or the truth is zero over it: the error has nothing to be relative to.

    Examples
    --------
    >>> field_relative_l2(np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.array([True, True]))
    0.7071067811865476
    """
    return float(relative_l2(*_one_field(pred, truth, mask))[0])


def field_r2(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """:func:`r2_score` of one field (NumPy arrays, float64), as a float; errors as :func:`field_relative_l2`.

    Examples
    --------
    >>> field_r2(np.array([1.0, 2.0, 3.5]), np.array([1.0, 2.0, 3.0]), np.ones(3, dtype=bool))
    0.875
    """
    return float(r2_score(*_one_field(pred, truth, mask))[0])


def r2_score(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, eps: float = 1e-30) -> torch.Tensor:
    """Per-sample coefficient of determination ``1 - SS_res / SS_tot`` over the mask, ``(B,)``; NaN for an empty
    mask."""
    _check(pred, target, mask)
    m = _flat(mask).to(pred.dtype)
    n = m.sum(1).clamp_min(1.0)
    t = _flat(target)
    mean = (t * m).sum(1) / n
    ss_res = (_flat((pred - target) ** 2) * m).sum(1)
    ss_tot = (((t - mean[:, None]) ** 2) * m).sum(1)
    return _where_any(_flat(mask), 1.0 - ss_res / ss_tot.clamp_min(eps))


def max_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample ``max_m |p - t|``, ``(B,)``; NaN for an empty mask."""
    _check(pred, target, mask)
    err = _flat((pred - target).abs()) * _flat(mask).to(pred.dtype)
    return _where_any(_flat(mask), err.max(1).values)


def electric_field(phi: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
    """``E = -grad phi`` of one sample ``(1, D, H, W)`` -> ``(3, D, H, W)`` ordered (E_z, E_y, E_x).

    ``spacing`` is (dx, dy, dz) in metres; the array axes (D, H, W) are (z, y, x), hence the reversal.
    """
    dx, dy, dz = (float(s) for s in spacing)
    grads = torch.gradient(phi[0], spacing=(dz, dy, dx), dim=(0, 1, 2))
    return -torch.stack(grads)


def gradient_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, spacing: torch.Tensor, eps: float = 1e-30
) -> torch.Tensor:
    """Batch mean of ``sum_m |E_p - E_t|^2 / sum_m |E_t|^2`` with ``E = -grad phi`` (see module notes).

    ``spacing`` is ``(B, 3)`` (dx, dy, dz) in metres, one row per sample (samples may differ in resolution). A
    sample with an empty mask contributes NaN.
    """
    _check(pred, target, mask)
    losses = []
    for b in range(pred.shape[0]):
        e_p = electric_field(pred[b], spacing[b])
        e_t = electric_field(target[b], spacing[b])
        m = mask[b].to(pred.dtype)  # (1, D, H, W) broadcasts over the 3 components
        num = (((e_p - e_t) ** 2) * m).sum()
        den = ((e_t**2) * m).sum()
        ratio = num / den.clamp_min(eps)
        losses.append(torch.where(mask[b].any(), ratio, torch.full_like(ratio, float("nan"))))
    return torch.stack(losses).mean()


def training_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    spacing: torch.Tensor,
    lambda_mse: float = 1.0,
    lambda_grad: float = 0.1,
) -> torch.Tensor:
    """``lambda_mse * mean_b MSE_b + lambda_grad * G`` (scalar)."""
    loss = lambda_mse * masked_mse(pred, target, mask).mean()
    if lambda_grad > 0:
        loss = loss + lambda_grad * gradient_loss(pred, target, mask, spacing)
    return loss
