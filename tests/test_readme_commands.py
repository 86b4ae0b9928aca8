"""The README's "Everyday use" block, run as a user types it: each command in a new shell, at the root of a project
whose pipeline has run, after the set-up line the README states, nothing else in the environment.

These tests need the smoke pipeline's outputs: ``make smoke`` (``.ci/smoke``) runs them in its throw-away copy with
``FIELDLAB_SMOKE_DIR`` set, after ``dvc repro``. Those carry the ``smoke`` marker, so ``make test`` deselects them;
selected without that folder they fail (a README check that quietly did not run is no check).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).parents[1] / "README.md"
#: Seconds one README command may take on the smoke outputs (``make explore`` runs eight tiny experiments).
TIMEOUT = 1200


def everyday_block(text: str) -> list[str]:
    """The commands of the first ```bash block after "Everyday use", comments and blank lines dropped.

    Examples
    --------
    >>> everyday_block("Everyday use:\\n\\n```bash\\nsource x  # set-up\\n\\ndvc repro   # all\\n```\\n")
    ['source x', 'dvc repro']
    """
    start = text.index("Everyday use")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block is not None, "README: no ```bash block after 'Everyday use'"
    lines = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def smoke_dir() -> Path:
    folder = os.environ.get("FIELDLAB_SMOKE_DIR")
    assert folder, "FIELDLAB_SMOKE_DIR is not set: run these tests through `make smoke` (.ci/smoke)"
    path = Path(folder)
    assert (path / "dvc.lock").is_file(), f"{path}: no dvc.lock; the smoke pipeline has not run there"
    return path


def new_shell(setup: str, command: str, cwd: Path) -> subprocess.CompletedProcess:
    """``command`` in a new non-login bash after ``setup``, with only a minimal environment (no venv on PATH)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    script = f"set -e\n{setup}\n{command}\n"
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_the_block_starts_with_its_set_up_and_names_the_promised_commands():
    commands = everyday_block(README.read_text())
    assert commands[0] == "source .venv/bin/activate"
    for expected in ("dvc repro", "dvc exp run -S model.backbone=unet", "dvc metrics diff", "fieldlab predict"):
        assert any(c.startswith(expected) for c in commands), expected


@pytest.mark.smoke
def test_predict_on_a_2x_test_sample_reproduces_the_evaluation():
    """Before the block runs (it switches the workspace to the UNet): the README's predict command on a published
    2x test sample gives the error eval_sr reported for that sample and its default predictor, to 1e-6; when the
    default is a classical route, predict on every 2x test sample gives that route's mean error."""
    work = smoke_dir()
    setup = everyday_block(README.read_text())[0]
    metrics = json.loads((work / "metrics" / "eval_sr.json").read_text())
    per_sample = json.loads((work / "plots" / "eval_sr" / "per_sample.json").read_text())
    default = metrics["default"]["x2"]
    classical = default["from"] == "baselines"  # a route that clearly dominates the corrector (timing-dependent)
    names = sorted(per_sample["x2"]) if classical else sorted(per_sample[default["from"]])[:1]
    ckpt = f"experiments/{metrics['backbone']}/checkpoints/best.pt"
    samples = [work / "data" / "potential" / "test_2x" / f"{name}.npz" for name in names]
    out = work / "predict-check"
    args = " ".join(str(s) for s in samples)
    proc = new_shell(setup, f"fieldlab predict --checkpoint {ckpt} {args} --out {out}", work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(f"{samples[0]}: {default['name']} ")
    got = []
    for name in names:
        with np.load(out / f"{name}.npz") as npz:
            got.append(float(npz["rel_l2"]))
    if classical:  # the route's own point: the mean over the split's samples
        want = metrics["baselines"][default["name"]]["x2"]["rel_l2"]
        assert float(np.mean(got)) == pytest.approx(want, rel=1e-6, abs=0)
    else:
        assert got[0] == pytest.approx(per_sample[default["from"]][names[0]]["rel_l2"], rel=1e-6, abs=0)
    shutil.rmtree(out)


@pytest.mark.smoke
def test_every_everyday_command_runs_as_written():
    """Each command of the block in its own new shell, in order: exit 0, and what the README promises of it."""
    work = smoke_dir()
    setup, *commands = everyday_block(README.read_text())
    shutil.copyfile(work / "data" / "potential" / "test" / "0000.npz", work / "my_sample.npz")  # the user's file
    for command in commands:
        proc = new_shell(setup, command, work)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        if command.startswith("dvc exp run"):  # only eval_sr reads model.backbone
            ran = re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr)
            assert ran == ["eval_sr"], ran
        if command.startswith("fieldlab predict"):
            assert (work / "predictions" / "my_sample.npz").is_file()
            assert proc.stdout.startswith("my_sample.npz: ")
