"""Checkpoints load with the safe unpickler and restore every random generator."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fieldlab.core.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fieldlab.errors import InputError


def draws():
    return random.random(), float(np.random.random()), float(torch.rand(1))  # noqa: NPY002


def test_round_trip_weights_only_and_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = rng_state()
    expected = draws()
    ckpt = {
        "model": model.state_dict(),
        "model_config": {"backbone": "fno"},
        "backbone": "fno",
        "transforms": {"f_scale": 1.0, "u_scale": 2.0},
        "epoch": 3,
        "optimizer": opt.state_dict(),
        "rng": state,
    }
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, ckpt)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind
    loaded = torch.load(path, weights_only=True)
    torch.testing.assert_close(loaded["model"]["weight"], model.weight.detach())
    draws()  # advance every generator
    set_rng_state(load_checkpoint(path)["rng"])
    assert draws() == expected


def test_missing_or_foreign_checkpoint(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="lacks"):
        load_checkpoint(tmp_path / "other.pt")
