"""The learning rate each optimiser step of a real training run uses: linear warm-up, then the chosen schedule.

The tiny corpus has 4 training samples at batch 2: 2 optimiser steps per epoch. Each expected rate is derived by
hand from the definitions (``train.lr`` = ``LR``):

- warm-up over ``w`` steps: step ``k < w`` uses ``LR (k + 1) / w``;
- ``step`` (``step_size`` = 2 epochs = 4 steps, ``gamma`` = 1/2): after the warm-up, ``LR / 2`` from step 4 on
  (the decay sits on the epoch boundary, counted from the start of the run);
- ``cosine`` (``w`` = 2 of 6 steps, so ``t = (k - 2) / 4``; ``r`` = ``min_lr_ratio``):
  ``r + (1 - r) (1 + cos(pi t)) / 2`` is 1 at k = 2, ``r + (1 - r) (2 + sqrt 2) / 4`` at k = 3,
  ``(1 + r) / 2`` at k = 4 and ``r + (1 - r) (2 - sqrt 2) / 4`` at k = 5;
- ``none``: ``LR`` after the warm-up.
"""

from __future__ import annotations

import math

import pytest
import torch
from support_train import tiny_config, tiny_factory, write_corpus

from fieldlab.potential.training.operator import train_operator

LR = 1e-2
R = 0.01  # train.min_lr_ratio
SQRT2 = math.sqrt(2.0)

CASES = {
    "step after a 3-step warm-up": (
        {"scheduler": "step", "warmup_steps": 3, "step_size": 2, "gamma": 0.5, "epochs": 4},
        [1 / 3, 2 / 3, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5],
    ),
    "step without warm-up": (
        {"scheduler": "step", "warmup_steps": 0, "step_size": 1, "gamma": 0.5, "epochs": 3},
        [1.0, 1.0, 0.5, 0.5, 0.25, 0.25],
    ),
    "cosine after a 2-step warm-up": (
        {"scheduler": "cosine", "warmup_steps": 2, "min_lr_ratio": R, "epochs": 3},
        [0.5, 1.0, 1.0, R + (1 - R) * (2 + SQRT2) / 4, (1 + R) / 2, R + (1 - R) * (2 - SQRT2) / 4],
    ),
    "none after a 4-step warm-up": (
        {"scheduler": "none", "warmup_steps": 4, "epochs": 3},
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0],
    ),
}


@pytest.mark.parametrize(("train", "factors"), list(CASES.values()), ids=list(CASES))
def test_each_optimiser_step_uses_the_scheduled_learning_rate(tmp_path, monkeypatch, train, factors):
    used = []
    adamw_step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        used.append(self.param_groups[0]["lr"])
        return adamw_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    root = write_corpus(tmp_path / "potential")
    cfg = tiny_config(root, tmp_path, lr=LR, **train)
    train_operator(cfg, "fno", tmp_path / "run", model_factory=tiny_factory)
    # The scheduler multiplies LR by each factor: one rounding, far inside rel 1e-12.
    assert used == pytest.approx([LR * f for f in factors], rel=1e-12)
