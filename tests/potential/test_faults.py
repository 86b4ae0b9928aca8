"""Faults a user meets: a training or a priors stage killed with SIGKILL part-way, then run again.

Nothing here is simulated inside the process: each stage runs as its own interpreter and is killed from outside
(``kill -9``), so no ``finally`` or signal handler can tidy up. What must hold afterwards is what the user relies
on: the resumed training finishes from its last checkpoint, and the cache the killed run was replacing is still
whole (byte for byte), the staging folder it left is removed by the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support_train import write_corpus

from fieldlab.core.checkpoint import load_checkpoint

ROOT = Path(__file__).parents[2]
ENV = {"PYTHONPATH": f"{ROOT / 'src'}", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``condition()`` every 10 ms until it holds; fail if the process ends first or time runs out."""
    t0 = time.monotonic()
    while not condition():
        assert proc.poll() is None, f"ended before the kill: {proc.communicate()[1]}"
        assert time.monotonic() - t0 < timeout, "condition never held"
        time.sleep(0.01)


def kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.npz")}


def test_killed_training_resumes_to_the_end(tmp_path):
    """``fieldlab train`` killed right after its first ``last.pt``; ``--resume`` continues from that epoch and
    finishes all ``train.epochs`` (the final checkpoint's epoch), with a summary written."""
    root = write_corpus(tmp_path / "potential")
    epochs = 40
    params = tmp_path / "params.yaml"
    params.write_text(
        json.dumps(
            {
                "device": "cpu",
                "data": {"root": str(root)},
                "model": {
                    "encoder": {"channels": 2, "hidden": 4},
                    "fno": {"width": 4, "modes": [2, 2, 2], "layers": 1},
                },
                "train": {"epochs": epochs, "amp": False, "warmup_steps": 0},
                "loss": {"singularity_radius": 1.0},
                "log": {"root": str(tmp_path / "experiments"), "progress": False},
            }
        )
    )
    out = tmp_path / "experiments" / "fno"
    cmd = [sys.executable, "-m", "fieldlab", "train", "--params", str(params), "--backbone", "fno", "--out", str(out)]
    last = out / "checkpoints" / "last.pt"
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    wait_for(last.is_file, proc)
    kill9(proc)
    killed_at = int(load_checkpoint(last)["epoch"])
    assert killed_at < epochs, "the training finished before the kill: the test did not interrupt it"
    done = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert int(load_checkpoint(last)["epoch"]) == epochs
    assert (out / "summary.json").is_file()


SLOW_PRIORS = """
import runpy, sys, time
import fieldlab.potential.data.priors as priors
make = priors._write_into
def slow(staging):
    write = make(staging)
    def slowly(result):
        time.sleep(0.3)
        return write(result)
    return slowly
priors._write_into = slow
sys.argv = [{stage!r}]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_killed_priors_stage_leaves_the_old_cache_whole(tmp_path):
    """The priors stage killed after it has written some priors into its staging folder: the previous cache is
    unchanged, and the next run removes the staging folder and swaps in a complete cache."""
    from test_coarse_prior import balanced_corpus, run_stage, write_params

    balanced_corpus(tmp_path / "data" / "potential")
    write_params(tmp_path)
    assert run_stage(tmp_path).returncode == 0
    priors = tmp_path / "data" / "priors"
    before = digest(priors)
    assert before
    script = SLOW_PRIORS.format(stage=str(ROOT / "stages" / "priors.py"))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True)

    def staged_some() -> bool:
        return any(any(p.rglob("*.npz")) for p in (tmp_path / "data").glob(".priors.*.tmp"))

    wait_for(staged_some, proc)
    kill9(proc)
    assert list((tmp_path / "data").glob(".priors.*.tmp")), "the kill left no staging folder: nothing was tested"
    assert digest(priors) == before
    proc = run_stage(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not list((tmp_path / "data").glob(".priors.*"))
    assert set(digest(priors)) == set(before)


@pytest.mark.parametrize("leftover", [".priors.abc123.tmp", ".priors.def456.old"])
def test_leftover_staging_is_removed_and_other_folders_are_kept(tmp_path, leftover):
    from fieldlab.potential.data.priors import remove_stale_staging

    root = tmp_path / "priors"
    (tmp_path / leftover / "train").mkdir(parents=True)
    (tmp_path / ".priors_other.x.tmp").mkdir()
    (tmp_path / "priors2").mkdir()
    removed = remove_stale_staging(root)
    assert [p.name for p in removed] == [leftover]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".priors_other.x.tmp", "priors2"]
