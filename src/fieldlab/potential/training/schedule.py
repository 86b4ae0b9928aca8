"""The learning-rate schedule of the operator trainer: linear warm-up, then cosine, step decay or constant.

The schedule is one closed form per optimiser step (:func:`lr_factor`), applied by a ``LambdaLR``
(:func:`build_scheduler`), so the warm-up comes first whichever schedule follows it.
"""

from __future__ import annotations

import math

import torch

from fieldlab.config import TrainConfig


def lr_factor(step: int, total: int, cfg_train: TrainConfig, steps_per_epoch: int = 1) -> float:
    """Multiplier of ``train.lr`` for optimiser step ``step`` (0-based) of ``total``.

    Parameters
    ----------
    step
        Optimiser steps already taken.
    total
        Optimiser steps of the whole run (``epochs * steps_per_epoch``).
    cfg_train
        ``warmup_steps``, ``scheduler`` and its settings (``min_lr_ratio``; ``step_size``, ``gamma``).
    steps_per_epoch
        Optimiser steps per epoch; ``step_size`` of the step schedule counts epochs.

    Returns
    -------
    float
        With ``w = warmup_steps``: ``(step + 1) / w`` while ``step < w`` (linear warm-up, reaching 1 at step
        ``w - 1``); after it

        - ``cosine``: ``r + (1 - r) (1 + cos(pi t)) / 2``, ``t = (step - w) / (total - w)`` the fraction of the
          steps after the warm-up done (capped at 1) and ``r = min_lr_ratio``;
        - ``step``: ``gamma ** floor(step / (step_size * steps_per_epoch))``, a decay at every ``step_size``-th
          epoch boundary, counted from the start of the run as ``torch.optim.lr_scheduler.StepLR`` counts it;
        - ``none``: 1.

    Examples
    --------
    >>> from fieldlab.config import TrainConfig
    >>> cfg = TrainConfig(scheduler="step", warmup_steps=4, step_size=2, gamma=0.5)
    >>> [lr_factor(s, 30, cfg, steps_per_epoch=3) for s in range(8)]
    [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 0.5, 0.5]
    """
    warm = cfg_train.warmup_steps
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if cfg_train.scheduler == "cosine":
        t = min(1.0, (step - warm) / max(1, total - warm))
        r = cfg_train.min_lr_ratio
        return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg_train.scheduler == "step":
        return cfg_train.gamma ** (step // (cfg_train.step_size * steps_per_epoch))
    return 1.0


def build_scheduler(
    opt: torch.optim.Optimizer, cfg_train: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimiser-step ``LambdaLR`` of :func:`lr_factor` over ``train.epochs * steps_per_epoch`` steps."""
    total_steps = steps_per_epoch * cfg_train.epochs
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total_steps, cfg_train, steps_per_epoch))
