"""Seeding, device selection and atomic writes."""

from __future__ import annotations

import json
import os
import random
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from fieldlab.core.device import select_device
from fieldlab.core.io import atomic_open, save_npz, write_json
from fieldlab.core.seeding import numpy_rng, seed_everything, worker_init_fn
from fieldlab.errors import ConfigError


def draw() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))  # noqa: NPY002


def test_seed_everything_makes_all_generators_repeat() -> None:
    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first
    seed_everything(124)
    assert draw() != first


def test_seed_everything_leaves_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """PYTHONHASHSEED only acts when the interpreter starts: setting it from a running process seeds nothing and would
    only leak into child processes, so seeding must not touch the environment."""
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    before = dict(os.environ)
    seed_everything(7)
    assert dict(os.environ) == before


def test_seeded_generator_and_worker_seeds() -> None:
    a = torch.randint(0, 10**6, (4,), generator=seed_everything(5))
    b = torch.randint(0, 10**6, (4,), generator=seed_everything(5))
    assert torch.equal(a, b)
    torch.manual_seed(99)
    worker_init_fn(0)
    x = np.random.rand()  # noqa: NPY002
    torch.manual_seed(99)
    worker_init_fn(0)
    assert np.random.rand() == x  # noqa: NPY002


def test_numpy_rng_streams_are_independent_and_stable() -> None:
    assert numpy_rng(0, 1).random() == numpy_rng(0, 1).random()
    assert numpy_rng(0, 1).random() != numpy_rng(0, 2).random()


def test_negative_seed_is_rejected() -> None:
    with pytest.raises(ValueError, match="seed = -1"):
        seed_everything(-1)


def test_device_selection() -> None:
    assert select_device("cpu") == torch.device("cpu")
    auto = select_device("auto")
    expected = "cuda" if torch.cuda.is_available() else auto.type
    assert auto.type == expected
    with pytest.raises(ConfigError, match="expected auto, cpu"):
        select_device("tpu")


def test_absent_devices_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        select_device("cuda:0")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="MPS is not available"):
        select_device("mps")
    assert select_device("auto") == torch.device("cpu")


def test_atomic_writes(tmp_path: Path) -> None:
    write_json(tmp_path / "a" / "m.json", {"x": np.float32(1.5), "y": np.arange(2)})
    assert json.loads((tmp_path / "a" / "m.json").read_text()) == {"x": 1.5, "y": [0, 1]}
    mask = os.umask(0o022)
    try:
        write_json(tmp_path / "p.json", {})
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "p.json").stat().st_mode) == 0o644
    save_npz(tmp_path / "s.npz", u=np.ones(3, np.float32))
    with np.load(tmp_path / "s.npz") as npz:
        assert npz["u"].tolist() == [1.0, 1.0, 1.0]
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
