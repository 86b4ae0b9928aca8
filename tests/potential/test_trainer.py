"""The operator trainer on a tiny corpus: outputs, TensorBoard content, resume after a kill, non-finite loss, and
what trains the spacing conditioner."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from support_train import BASE_GRID, EXTENT, make_sample, tiny_config, tiny_factory, write_corpus
from tensorboard.backend.event_processing import event_accumulator

from fieldlab.config import ConditioningConfig, EncoderConfig, FNOConfig, PriorConfig
from fieldlab.core.checkpoint import load_checkpoint
from fieldlab.core.io import save_npz
from fieldlab.potential.models.wrapper import build_model
from fieldlab.potential.training.operator import NonFiniteLossError, train_operator

TESTS = Path(__file__).parents[1]  # support_train.py lives in tests/


@pytest.fixture
def root(tmp_path):
    return write_corpus(tmp_path / "potential")


def run(cfg, out, **kw):
    return train_operator(cfg, "fno", out, history_csv=out.parent / "history.csv", model_factory=tiny_factory, **kw)


def test_training_writes_checkpoints_history_and_tensorboard(root, tmp_path):
    cfg = tiny_config(root, tmp_path, epochs=3)
    out = tmp_path / "experiments" / "fno"
    summary = run(cfg, out)
    assert summary["params"] == sum(p.numel() for p in tiny_factory(None, "fno").parameters())
    assert summary["steps"] == 3 * 2  # 4 samples, batch 2
    for name in ("best.pt", "last.pt"):
        ckpt = torch.load(out / "checkpoints" / name, weights_only=True)
        assert {"model", "optimizer", "transforms", "rng", "model_config", "epoch"} <= set(ckpt)
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 3
    with open(out.parent / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    losses = [float(r["train_loss"]) for r in rows]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert summary["best_val_rel_l2"] == min(float(r["val_rel_l2"]) for r in rows)

    acc = event_accumulator.EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/train", "loss/val", "val/rel_l2", "norms/grad", "norms/param"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("loss/train")] == [1, 2, 3]
    assert len(acc.Scalars("norms/grad")) == 6
    assert "val/error_map" in tags["images"] and len(acc.Images("val/error_map")) == 3
    text_tags = set(tags["tensors"])  # text summaries are stored as string tensors
    assert any(t.startswith("config") for t in text_tags)
    config_text = acc.Tensors(next(t for t in text_tags if t.startswith("config")))[0].tensor_proto.string_val[0]
    assert b"singularity_radius" in config_text


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path[:0] = [{tests!r}]
    from support_train import tiny_config, tiny_factory
    from fieldlab.potential.training.operator import train_operator
    from pathlib import Path
    root, tmp, out = Path({root!r}), Path({tmp!r}), Path({out!r})

    def hook(epoch, step, global_step):
        if epoch == 1 and step == 0:  # after the first step of the second epoch: no clean-up, no checkpoint
            os.kill(os.getpid(), signal.SIGKILL)

    train_operator(tiny_config(root, tmp, epochs=3), "fno", out, model_factory=tiny_factory, step_hook=hook)
    """
)


def test_resume_after_kill_mid_epoch_continues_from_last_checkpoint(root, tmp_path):
    """A SIGKILL inside epoch 2 leaves last.pt of epoch 1; --resume then reproduces the uninterrupted run."""
    cfg = tiny_config(root, tmp_path, epochs=3)
    ref_out = tmp_path / "ref"
    run(cfg, ref_out)

    out = tmp_path / "killed"
    script = KILLER.format(tests=str(TESTS), root=str(root), tmp=str(tmp_path), out=str(out))
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent / "src")}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1

    steps = []
    summary = run(cfg, out, resume=True, step_hook=lambda e, s, g: steps.append((e, g)))
    assert steps[0] == (1, 3)  # continues with epoch 2 (index 1) at global step 3
    assert summary["steps"] == 6
    resumed = load_checkpoint(out / "checkpoints" / "last.pt")
    reference = load_checkpoint(ref_out / "checkpoints" / "last.pt")
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3]
    for key, value in reference["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=1e-5, atol=1e-6)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(root, tmp_path):
    cfg = tiny_config(root, tmp_path, epochs=3)
    out = tmp_path / "nan"
    model_holder = {}

    def factory(model_cfg, backbone):
        model_holder["m"] = tiny_factory(model_cfg, backbone)
        return model_holder["m"]

    def poison(epoch, step, global_step):
        if epoch == 1 and step == 0:
            with torch.no_grad():
                next(model_holder["m"].parameters()).fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        train_operator(cfg, "fno", out, model_factory=factory, step_hook=poison)
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values())


@pytest.mark.parametrize("zooms", [(1.0, 1.0), (1.0, 0.5)], ids=["one_spacing", "mixed_spacings"])
def test_conditioner_is_trained_only_by_mixed_spacings(zooms, tmp_path):
    """One epoch of the real model (FNO, FiLM on): with two spacings (the same grid over a limb half the size; one
    batch each) every conditioner parameter receives gradient; with one spacing, the reference, its first layer's
    weight receives exactly none at any step (log(dx / ref) = 0), which is why a one-spacing corpus never trains it."""
    root = write_corpus(tmp_path / "potential", counts=(2, 1, 1))
    for i, zoom in enumerate(zooms):
        save_npz(root / "train" / f"{i:04d}.npz", **make_sample(np.random.default_rng(i), BASE_GRID, zoom=zoom))
    cfg = tiny_config(root, tmp_path, epochs=1, batch_size=2)
    reference = tuple(e / n for e, n in zip(EXTENT, BASE_GRID[::-1], strict=True))  # (dx, dy, dz) at zoom 1
    model_cfg = dataclasses.replace(
        cfg.model,
        prior=PriorConfig(kind="none"),
        encoder=EncoderConfig(channels=3, hidden=4, layers=2),
        conditioning=ConditioningConfig(enabled=True, hidden=4, reference_spacing=reference),
        fno=FNOConfig(width=4, modes=(3, 3, 3), layers=2),
    )
    cfg = dataclasses.replace(cfg, model=model_cfg)
    built, grads = [], {}

    def factory(model_section, backbone):  # the real model, kept for the hook
        built.append(build_model(model_section, backbone))
        return built[-1]

    def every_step(epoch, i, step):  # the sum of each entry's gradient magnitude over the epoch's steps
        for n, p in built[0].conditioner.named_parameters():
            grads[n] = grads.get(n, 0) + p.grad.abs()

    summary = train_operator(cfg, "fno", tmp_path / "out", model_factory=factory, step_hook=every_step)
    assert summary["steps"] == (1 if zooms[0] == zooms[1] else 2)  # a batch never mixes two spacings
    assert sorted(grads) == ["mlp.0.bias", "mlp.0.weight", "mlp.2.bias", "mlp.2.weight"]
    if zooms[0] == zooms[1]:
        assert float(grads["mlp.0.weight"].abs().max()) == 0.0
        assert float(grads["mlp.0.bias"].abs().max()) > 0.0
    else:
        for name, g in grads.items():
            assert float(g.abs().min()) > 0.0, name  # every entry, not just the tensor
