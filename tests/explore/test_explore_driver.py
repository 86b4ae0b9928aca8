"""The driver end to end on a fake inr_block stage: --no-dvc, real `dvc exp run`, failures, resume, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from explore_fakes import BASE_INR, env, make_workspace, small_config

from fieldlab.cli import main
from fieldlab.errors import ConfigError
from fieldlab.explore.blocks import summarise
from fieldlab.explore.driver import Study, run_study
from fieldlab.explore.journal import Journal
from fieldlab.explore.mutations import mutate
from fieldlab.explore.runners import DvcRunner, RunResult, SubprocessRunner


def check_tree(nodes: list, n_blocks: int, n_iter: int) -> None:
    """Ids 1..n, each (block, iteration) exactly once, roots only at iteration 1, parents inside the block."""
    assert [n.id for n in nodes] == list(range(1, n_blocks * n_iter + 1))
    assert sorted((n.block, n.iteration) for n in nodes) == [
        (b, i) for b in range(1, n_blocks + 1) for i in range(1, n_iter + 1)]  # fmt: skip
    by_id = {n.id: n for n in nodes}
    for n in nodes:
        assert (n.parent is None) == (n.iteration == 1)
        assert n.parent is None or by_id[n.parent].block == n.block


def test_no_dvc_study_writes_every_output(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", dvc=False)
    out = tmp_path / "out"
    cfg = small_config(stage_cmd="python stages/inr_block.py", name="inr")
    nodes = run_study(cfg, Study(ws, out, 2, 3, use_dvc=False), log=lambda s: None)
    check_tree(nodes, 2, 3)
    assert Journal(out / "journal.jsonl").load() == nodes
    assert nodes[0].params == BASE_INR and nodes[0].r2 == pytest.approx(1.0)  # the fake's optimum
    assert nodes[3].params["field_name"] == "F"  # block 2 rotates Jp -> F
    names = ["ucb_scores.txt", "inr_analysis.md", "inr_memory.md", "baseline_params.yaml", "configs/iter_001.yaml"]
    names += ["configs/iter_006.yaml", "tree_block1.png", "r2_block1.png", "tree_block2.png", "r2_block2.png"]
    for name in names:
        assert (out / name).is_file(), name
    scores = (out / "ucb_scores.txt").read_text().splitlines()
    assert len(scores) == sum(n.r2 is not None for n in nodes if n.block == 2)
    analysis = (out / "inr_analysis.md").read_text()
    assert analysis.count("### b") == 6 and "Block summary" in analysis and "Visual: SSIM" in analysis
    memory = (out / "inr_memory.md").read_text()
    assert "| 1 | Jp |" in memory and len(memory.splitlines()) <= 500
    assert yaml.safe_load((out / "configs" / "iter_004.yaml").read_text())["inr"] == nodes[3].params


def test_failed_fit_becomes_a_failed_node_and_the_loop_goes_on(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", dvc=False)
    text = (ws / "params.yaml").read_text().replace("hidden_features: 256", "hidden_features: 2048")
    (ws / "params.yaml").write_text(text)  # the fake stage refuses widths > 1024
    nodes = run_study(small_config(), Study(ws, tmp_path / "out", 1, 3, use_dvc=False), log=lambda s: None)
    assert nodes[0].status == "failed" and "fake out of memory" in nodes[0].error
    assert len(nodes) == 3 and nodes[1].parent == 1
    assert "FAILED" in (tmp_path / "out" / "inr_analysis.md").read_text()


def test_robustness_repeat_runs_under_another_seed(tmp_path: Path) -> None:
    """A same-seed repeat is bit-identical on a CPU (and a DVC run-cache hit): the repeat must change the seed.

    The fake stage's R2 drops by 0.15 per unit of seed, so the repeat shows a spread that marks the block stochastic.
    """
    ws = make_workspace(tmp_path / "ws", dvc=False)
    cfg = small_config()
    nodes = run_study(cfg, Study(ws, tmp_path / "out", 1, 4, use_dvc=False), log=lambda s: None)
    repeat = next(n for n in nodes if n.strategy == "robustness-test")
    original = next(n for n in nodes if n.id == repeat.parent)
    assert repeat.params == original.params and (original.seed, repeat.seed) == (None, cfg.seed + 1)
    assert repeat.r2 == pytest.approx(original.r2 - 0.15)
    assert summarise(nodes).stochastic
    assert f"seed {cfg.seed + 1}" in (tmp_path / "out" / "inr_analysis.md").read_text()
    assert Journal(tmp_path / "out" / "journal.jsonl").load() == nodes  # the seed survives the journal


def test_baseline_exponent_floats_are_numbers(tmp_path: Path) -> None:
    """params.yaml written by hand or by ``dvc exp run -S`` holds ``lr: 1e-4`` (YAML 1.1: a string): the study must
    read a number, run every fit with it and mutate it (``old * factor`` on a string would raise)."""
    ws = make_workspace(tmp_path / "ws", dvc=False)
    text = (ws / "params.yaml").read_text().replace("lr: 0.0001", "lr: 1e-4")
    (ws / "params.yaml").write_text(text)
    cfg = small_config()
    nodes = run_study(cfg, Study(ws, tmp_path / "out", 1, 3, use_dvc=False), log=lambda s: None)
    assert nodes[0].params["lr"] == 1e-4 and all(n.status == "ok" for n in nodes), [n.error for n in nodes]
    new, _ = mutate(nodes[0].params, "lr", np.random.default_rng(0), cfg.explore.ranges)
    assert new["lr"] in (2e-4, 5e-5)


class Interrupting:
    """Wraps a runner; raises KeyboardInterrupt inside run number ``at`` (as Ctrl-C during a fit would)."""

    def __init__(self, inner: SubprocessRunner, at: int) -> None:
        self.inner, self.at, self.calls = inner, at, 0

    def run(self, name: str, inr: dict, seed: int | None = None) -> RunResult:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.inner.run(name, inr, seed)


def test_resume_after_interruption_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", dvc=False)
    out = tmp_path / "out"
    cfg = small_config()
    baseline = yaml.safe_load((ws / "params.yaml").read_text())
    runner = Interrupting(SubprocessRunner(ws, cfg.explore.stage_cmd, cfg.explore.metrics_file, baseline), at=4)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, Study(ws, out, 2, 3, use_dvc=False), runner=runner, log=lambda s: None)
    assert len(Journal(out / "journal.jsonl").load()) == 3
    with pytest.raises(ConfigError, match="--resume"):
        run_study(cfg, Study(ws, out, 2, 3, use_dvc=False), log=lambda s: None)
    resumed = run_study(cfg, Study(ws, out, 2, 3, use_dvc=False, resume=True), log=lambda s: None)
    check_tree(resumed, 2, 3)
    straight = run_study(cfg, Study(ws, tmp_path / "straight", 2, 3, use_dvc=False), log=lambda s: None)
    assert [(n.parent, n.params, n.strategy) for n in resumed] == [(n.parent, n.params, n.strategy) for n in straight]


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True, env=env()).stdout


def test_dvc_exp_run_study_and_cli_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two real experiments (b1-i1, b1-i2) via the CLI, then --resume with one more iteration adds exactly one."""
    ws = make_workspace(tmp_path / "ws", dvc=True)
    baseline = (ws / "params.yaml").read_text()
    monkeypatch.setenv("PATH", env()["PATH"])
    monkeypatch.chdir(ws)
    overrides = ["explore.ranges.total_steps=[100,5000]", "explore.ranges.lr=[1.0e-6,1.0e-3]"]
    assert main(["explore", "--blocks", "1", "--iters", "2", "--out", "out", *overrides]) == 0
    nodes = Journal(ws / "out" / "journal.jsonl").load()
    assert [n.exp_name for n in nodes] == ["b1-i1", "b1-i2"]
    refs = dict(line.split()[::-1] for line in git(ws, "for-each-ref", "--format=%(objectname) %(refname)",
                                                          "refs/exps").splitlines())  # fmt: skip
    for n in nodes:
        ref = next(r for r in refs if r.endswith("/" + n.exp_name))
        assert refs[ref] == n.commit
        committed = yaml.safe_load(git(ws, "show", f"{n.commit}:params.yaml"))["inr"]
        assert committed == n.params  # the experiment ran exactly the journal's config
    assert nodes[0].r2 == pytest.approx(1.0)
    assert nodes[0].metrics["ssim"] == [0.9, 0.7]  # lists kept although dvc exp show drops them
    assert (ws / "params.yaml").read_text() == baseline  # reset after every run
    assert main(["explore", "--blocks", "1", "--iters", "3", "--out", "out", "--resume", *overrides]) == 0
    again = Journal(ws / "out" / "journal.jsonl").load()
    assert again[:2] == nodes and [n.exp_name for n in again] == ["b1-i1", "b1-i2", "b1-i3"]
    assert os.path.getsize(ws / "out" / "ucb_scores.txt") > 0
    # 1e-05 must reach the stage as a float (the fake stage exits otherwise), nested values too
    runner = DvcRunner(ws, "inr_block", "metrics/inr.json", baseline)
    res = runner.run("direct", {**BASE_INR, "lr": 1e-5, "ngp": {"levels": 4}})
    assert res.metrics is not None, res.error
    seeded = runner.run("seeded", BASE_INR, seed=2)  # a robustness repeat: the experiment records the seed
    assert seeded.metrics is not None and seeded.metrics["final_r2"] == pytest.approx(1.0 - 0.3)
    assert yaml.safe_load(git(ws, "show", f"{seeded.commit}:params.yaml"))["seed"] == 2
    assert yaml.safe_load(git(ws, "show", f"{res.commit}:params.yaml"))["inr"]["lr"] == 1e-5


def test_command_agent_study_logs_reverts(tmp_path: Path) -> None:
    """agent: command in a --no-dvc study: the agent's lr edit is run, its out-of-range edit reverted and logged."""
    ws = make_workspace(tmp_path / "ws", dvc=False)
    (ws / "agent.py").write_text(
        "import yaml\np = yaml.safe_load(open('params.yaml'))\np['inr']['lr'] = p['inr']['lr'] / 2\n"
        "p['inr']['hidden_layers'] = 9\nopen('params.yaml', 'w').write(yaml.safe_dump(p))\nprint('STRATEGY: halve')\n"
    )
    baseline = (ws / "params.yaml").read_text()
    cfg = small_config(agent="command", agent_command=f"{sys.executable} agent.py")
    nodes = run_study(cfg, Study(ws, ws / "out", 1, 3, use_dvc=False), log=lambda s: None)
    assert [n.params["lr"] for n in nodes] == [1e-4, 5e-5, 2.5e-5]  # best UCB: node 1, then node 2 (fewer visits)
    assert all(n.params["hidden_layers"] == 3 for n in nodes)
    assert nodes[1].strategy == "halve" and "inr.hidden_layers = 9: expected a value in [2, 6]" in nodes[1].rationale
    assert (ws / "params.yaml").read_text() == baseline
    assert "hidden_layers = 9" in (ws / "out" / "inr_analysis.md").read_text()


def test_nan_r2_is_a_failed_node(tmp_path: Path) -> None:
    """A fit that reports final_r2 = NaN (e.g. a constant target) cannot be scored: it becomes a failed node."""
    ws = make_workspace(tmp_path / "ws", dvc=False)
    stage = (ws / "stages" / "inr_block.py").read_text().replace('"final_r2": r2', '"final_r2": float("nan")')
    (ws / "stages" / "inr_block.py").write_text(stage)
    nodes = run_study(small_config(), Study(ws, tmp_path / "out", 1, 2, use_dvc=False), log=lambda s: None)
    assert [n.status for n in nodes] == ["failed", "failed"] and "finite" in nodes[0].error
