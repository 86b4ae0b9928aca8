"""``fieldlab train`` and ``fieldlab eval-sr`` end to end with the real backbones at toy sizes."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from support_train import write_corpus

from fieldlab.cli import main


@pytest.mark.parametrize("backbone", ["unet", "fno"])
def test_cli_train_then_eval(tmp_path, monkeypatch, capsys, backbone):
    root = write_corpus(tmp_path / "potential", counts=(2, 1, 1))
    params = tmp_path / "params.yaml"
    params.write_text(
        f"""
device: cpu
data: {{root: {root}}}
model:
  encoder: {{channels: 4, hidden: 8}}
  conditioning: {{hidden: 8, reference_spacing: [0.01, 0.01, 0.01]}}
  unet: {{base: 4, depth: 2, groups: 2}}
  fno: {{width: 4, modes: [2, 2, 2], layers: 1}}
train: {{epochs: 3, amp: false, lr: 1.0e-2, augment: false}}
loss: {{singularity_radius: 1}}
log: {{root: {tmp_path / "experiments"}, progress: false}}
eval: {{figures: 1}}
"""
    )
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--params", str(params), "--backbone", backbone]) == 0
    headline = json.loads((tmp_path / "metrics" / f"train_{backbone}.json").read_text())
    summary = json.loads((tmp_path / "experiments" / backbone / "summary.json").read_text())
    assert summary["steps"] == 6  # 3 epochs of 2 samples, batch 1
    assert headline == {k: summary[k] for k in ("best_val_rel_l2", "best_epoch", "params", "train_time_s")}
    with open(tmp_path / "plots" / f"train_{backbone}.csv") as fh:
        rows = list(csv.DictReader(fh))
    losses = [float(r["train_loss"]) for r in rows]
    val = [float(r["val_rel_l2"]) for r in rows]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses + val)
    assert losses[-1] < losses[0] and val[-1] < val[0], (losses, val)  # the optimiser moves the real backbone downhill
    ckpt = torch.load(tmp_path / "experiments" / backbone / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["model_config"]["backbone"] == "fno"  # the section as configured; the trained backbone is separate
    assert ckpt["backbone"] == backbone

    assert main(["eval-sr", "--params", str(params), f"model.backbone={backbone}"]) == 2  # no rivals yet: one error
    assert "eval_rivals" in capsys.readouterr().err
    assert main(["eval-rivals", "--params", str(params)]) == 0
    assert (tmp_path / "data" / "rivals" / "rivals.json").is_file()
    assert main(["eval-sr", "--params", str(params), f"model.backbone={backbone}"]) == 0
    result = json.loads((tmp_path / "metrics" / "eval_sr.json").read_text())
    assert result["backbone"] == backbone
    assert result["ratio_x2_base"] == pytest.approx(result["x2"]["rel_l2"] / result["base"]["rel_l2"])
    assert "x2_restricted" in result  # every backbone is also evaluated through the training grid at 2x
    assert set(result["timing_check"]) == {"base", "x2"}  # the cached rivals' yardstick, re-timed
    assert (tmp_path / "plots" / "eval_sr" / f"{backbone}_x2_0000.png").is_file()
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["backbone"] == backbone


@pytest.mark.parametrize(
    ("source", "message"),
    [("synthetic", "expected the eigenvalues"), ("raw", "0000.npz: the loss mask holds 0 of")],
    ids=["synthetic-config-check", "raw-corpus-mask-check"],
)
def test_cli_train_refuses_a_muscle_tensor_the_corpus_lacks(tmp_path, monkeypatch, capsys, source, message):
    """loss.muscle_sigma unlike the corpus's muscle would leave an empty loss mask (loss 0, R2 1: a perfect score).
    For a synthetic corpus the config check against physics.conductivity.muscle stops it on load; a raw corpus is
    stopped by the dataset on the first sample. Either way: one error line, exit status 2, no metrics."""
    root = write_corpus(tmp_path / "potential", counts=(2, 1, 1))
    params = tmp_path / "params.yaml"
    params.write_text(
        f"""
device: cpu
data: {{root: {root}, source: {source}}}
model:
  encoder: {{channels: 4, hidden: 8}}
  conditioning: {{hidden: 8}}
  fno: {{width: 4, modes: [2, 2, 2], layers: 1}}
train: {{epochs: 1, amp: false}}
loss: {{singularity_radius: 1, muscle_sigma: [0.3, 0.3, 1.5, 0.0, 0.0, 0.0]}}
log: {{root: {tmp_path / "experiments"}, progress: false}}
"""
    )
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--params", str(params), "--backbone", "fno"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "metrics" / "train_fno.json").exists()
