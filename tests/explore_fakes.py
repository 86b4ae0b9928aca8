"""A cheap stand-in for the inr_block stage and a throw-away DVC repository around it, for the explore tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from fieldlab.config import ClusterConfig, Config, ExploreConfig, ExploreRanges
from fieldlab.explore.agents import Context, Proposal
from fieldlab.explore.journal import FAILED, OK, Node

#: the stage: reads inr from --params (default params.yaml), writes metrics/inr.json; fails for wide networks
FAKE_STAGE = """\
import argparse, json, math, pathlib, sys
import yaml
ap = argparse.ArgumentParser()
ap.add_argument("--params", default="params.yaml")
args, _ = ap.parse_known_args()
full = yaml.safe_load(open(args.params))
p = full["inr"]
for key in ("lr", "omega"):
    if not isinstance(p[key], float):
        sys.exit(f"inr.{key} = {p[key]!r}: expected a number")
if p["hidden_features"] > 1024:
    sys.exit("fake out of memory: hidden_features > 1024")
r2 = 1 - 0.02 * math.log10(p["lr"] / 1e-4) ** 2 - 0.01 * math.log2(p["hidden_features"] / 256) ** 2
r2 -= 1e-5 * (p["omega"] - 30) ** 2 + 0.15 * full.get("seed", 0)  # another seed: another fit
pathlib.Path("metrics").mkdir(exist_ok=True)
metrics = {"final_r2": r2, "slope": 0.95, "intercept": 0.0, "ssim": [0.9, 0.7],
           "training_time": p["total_steps"] * 1e-3, "field_name": p["field_name"]}
pathlib.Path("metrics/inr.json").write_text(json.dumps(metrics))
"""

BASE_INR = {
    "model": "siren_txy", "field_name": "Jp", "n_training_frames": 48, "hidden_features": 256, "hidden_layers": 3,
    "omega": 30.0, "lr": 1.0e-4, "batch_size": 4, "total_steps": 2000, "t_period": 1.0, "xy_period": 1.0,
}  # fmt: skip

DVC_YAML = """\
stages:
  inr_block:
    cmd: python stages/inr_block.py
    deps: [stages/inr_block.py]
    params: [seed, inr]
    metrics: [{metrics/inr.json: {cache: false}}]
"""


def env() -> dict[str, str]:
    """PATH with the venv first (dvc, python), no DVC analytics."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "DVC_NO_ANALYTICS": "1"}


def make_workspace(root: Path, dvc: bool) -> Path:
    """A workspace with params.yaml and the fake stage; with ``dvc``, also a git + DVC repo with one commit."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "stages").mkdir(exist_ok=True)
    (root / "stages" / "inr_block.py").write_text(FAKE_STAGE)
    (root / "params.yaml").write_text("# baseline\n" + yaml.safe_dump({"seed": 0, "inr": BASE_INR}, sort_keys=False))
    if dvc:
        (root / "dvc.yaml").write_text(DVC_YAML)
        (root / ".gitignore").write_text("/out/\n")
        run = {"cwd": root, "env": env(), "check": True, "capture_output": True}
        subprocess.run(["git", "init", "-q"], **run)
        subprocess.run(["dvc", "init", "-q"], **run)
        subprocess.run(["dvc", "config", "core.analytics", "false"], **run)
        subprocess.run(["git", "add", "-A"], **run)
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], **run)
    return root


def small_config(cluster: ClusterConfig | None = None, **explore: object) -> Config:
    """Config with small ranges for fast tests (``cluster``: where the rounds run, default this machine)."""
    ranges = ExploreRanges(total_steps=(100, 5000))
    cluster = cluster or ClusterConfig(address="")
    return Config(explore=ExploreConfig(ranges=ranges, time_budget_s=1e6, **explore), cluster=cluster)


def node(id: int, parent: int | None, r2: float | None, params: dict | None = None, **kw: object) -> Node:
    """A journal node with BASE_INR params (updated by ``params``) and R2 ``r2`` (``None``: failed)."""
    p = {**BASE_INR, **(params or {})}
    metrics = {} if r2 is None else {"final_r2": r2, "training_time": 1.0}
    kw.setdefault("block", 1)
    kw.setdefault("iteration", id)
    return Node(id=id, parent=parent, params=p, metrics=metrics, status=FAILED if r2 is None else OK, **kw)


class ScriptedAgent:
    """Proposals fixed per (block, iteration), whatever the results: the same study for any ``explore.parallel``.

    Iteration 1 is the root (``BASE_INR``); iteration i > 1 is a child of iteration max(1, i - 2) of the block (run
    before any round of two that holds i) with ``lr`` and ``omega`` moved by i; iteration 3 asks for a network the
    fake stage refuses (a failed node) and iteration 4 repeats its parent, iteration 2 (a robustness test: another
    seed).
    """

    def __init__(self, n_iter_block: int) -> None:
        self.n_iter_block = n_iter_block

    def propose(self, ctx: Context) -> Proposal:
        b, i = ctx.block, ctx.iteration
        if i == 1:
            return Proposal(None, dict(BASE_INR), "root", "", "scripted root")
        parent_id = (b - 1) * self.n_iter_block + max(1, i - 2)
        parent = next((n for n in ctx.nodes if n.id == parent_id), None)
        if parent is None:
            raise AssertionError(f"iteration {i}: parent node {parent_id} has not run yet")
        if i == 4:
            return Proposal(parent_id, dict(parent.params), "robustness-test", "none (repeat)", "scripted repeat")
        params = {**parent.params, "lr": 1e-4 * 2.0 ** (i % 3 - 1), "omega": 30.0 + i}
        params["hidden_features"] = 2048 if i == 3 else BASE_INR["hidden_features"]
        return Proposal(parent_id, params, "exploit", f"scripted move {i}", "scripted")
