"""``fieldlab train`` and ``fieldlab eval-sr`` end to end with the real backbones at toy sizes."""

from __future__ import annotations

import json

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
train: {{epochs: 2, amp: false}}
loss: {{singularity_radius: 1}}
log: {{root: {tmp_path / "experiments"}, progress: false}}
eval: {{figures: 1}}
"""
    )
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--params", str(params), "--backbone", backbone]) == 0
    summary = json.loads((tmp_path / "metrics" / f"train_{backbone}.json").read_text())
    assert summary["params"] > 0 and summary["steps"] == 4
    assert (tmp_path / "plots" / f"train_{backbone}.csv").is_file()
    ckpt = torch.load(tmp_path / "experiments" / backbone / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["model_config"]["backbone"] == "fno"  # the section as configured; the trained backbone is separate
    assert ckpt["backbone"] == backbone

    assert main(["eval-sr", "--params", str(params), f"model.backbone={backbone}"]) == 0
    result = json.loads((tmp_path / "metrics" / "eval_sr.json").read_text())
    assert result["backbone"] == backbone
    assert result["ratio_x2_base"] == pytest.approx(result["x2"]["rel_l2"] / result["base"]["rel_l2"])
    assert ("x2_restricted" in result) == (backbone == "unet")
    assert (tmp_path / "plots" / "eval_sr" / f"{backbone}_x2_0000.png").is_file()
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["backbone"] == backbone
