"""The agent-edit guard and the command agent, driven by a small fake agent script."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from explore_fakes import BASE_INR, make_workspace, node, small_config

from fieldlab.explore import guard
from fieldlab.explore.agents import Context
from fieldlab.explore.command_agent import CommandAgent, render_prompt

#: edits an allowed param (lr), an out-of-range param (batch_size 64 > 32), another section, a forbidden file,
#: an allowed source file, creates a stray file; echoes part of its prompt to prove it got one on stdin
FAKE_AGENT = """\
import pathlib, sys, yaml
prompt = sys.stdin.read()
pathlib.Path("seen_prompt.txt").write_text(prompt[:2000])
p = yaml.safe_load(open("params.yaml"))
p["inr"]["lr"] = 0.0002
p["inr"]["batch_size"] = 64
p["seed"] = 7
open("params.yaml", "w").write(yaml.safe_dump(p))
pathlib.Path("stages/inr_block.py").write_text("raise SystemExit('sabotaged')\\n")
pathlib.Path("src_model.py").write_text("WIDTH = 2\\n")
print("PARENT: 1")
print("STRATEGY: exploit")
print("RATIONALE: double the learning rate" + (" (memory read)" if "MEMORY-TEXT" in prompt else ""))
"""


def test_guard_keeps_allowed_and_reverts_the_rest(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", dvc=False)
    (ws / "src_model.py").write_text("WIDTH = 1\n")
    stage_before = (ws / "stages" / "inr_block.py").read_text()
    snap = guard.snapshot(ws)
    p = yaml.safe_load((ws / "params.yaml").read_text())
    p["inr"].update(lr=2e-4, batch_size=64, new_key=1)
    p["seed"] = 3
    (ws / "params.yaml").write_text(yaml.safe_dump(p))
    (ws / "stages" / "inr_block.py").write_text("broken")
    (ws / "src_model.py").write_text("WIDTH = 2\n")
    (ws / "stray.txt").write_text("x")
    report = guard.validate(snap, small_config().explore.ranges, ("src_model.py",))
    assert report.params == {**BASE_INR, "lr": 2e-4}
    assert (ws / "params.yaml").read_text() == snap.params
    assert (ws / "stages" / "inr_block.py").read_text() == stage_before
    assert (ws / "src_model.py").read_text() == "WIDTH = 2\n"
    assert not (ws / "stray.txt").exists()
    text = "\n".join(report.reverted)
    for reason in ("inr.batch_size = 64: expected a value in [1, 32]", "section seed changed", "inr.new_key",
                   "stages/inr_block.py: edited, not an allowed file: reverted", "stray.txt: created"):  # fmt: skip
        assert reason in text
    assert any("src_model.py" in k for k in report.kept)


def test_command_agent_end_to_end(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", dvc=False)
    (ws / "agent.py").write_text(FAKE_AGENT)
    (ws / "src_model.py").write_text("WIDTH = 1\n")
    cfg = small_config(agent="command", agent_command=f"{sys.executable} agent.py", agent_may_edit=("src_model.py",))
    baseline = yaml.safe_load((ws / "params.yaml").read_text())
    nodes = [node(1, None, 0.9), node(2, 1, 0.5, {"lr": 1e-6})]
    agent = CommandAgent(cfg.explore, ws)
    # the fake agent's own prompt dump is an unlisted new file: the guard must remove it as well
    prop = agent.propose(Context(1, 3, 4, 1.0, nodes, nodes), baseline, "MEMORY-TEXT", "Node 1: UCB=1")
    assert prop.params == {**BASE_INR, "lr": 2e-4}
    assert (prop.parent, prop.strategy) == (1, "exploit")
    assert prop.mutation == "lr 0.0001 -> 0.0002"
    assert "double the learning rate (memory read)" in prop.rationale and "batch_size = 64" in prop.rationale
    assert (ws / "src_model.py").read_text() == "WIDTH = 2\n"
    assert "sabotaged" not in (ws / "stages" / "inr_block.py").read_text()
    assert not (ws / "seen_prompt.txt").exists()
    assert yaml.safe_load((ws / "params.yaml").read_text())["seed"] == 0


def test_prompt_holds_instructions_memory_scores_and_block(tmp_path: Path) -> None:
    cfg = small_config()
    nodes = [node(1, None, 0.9)]
    text = render_prompt(cfg.explore, Context(2, 3, 4, 1.5, nodes, nodes), "MEMORY-TEXT", "Node 1: UCB=0.9")
    for part in ("Instructions for the exploration agent", "lr 1e-07..0.001", "MEMORY-TEXT", "final_r2",
                 "Node 1: UCB=0.9", "block 2, iteration 3 of 4"):  # fmt: skip
        assert part in text


def test_guard_reads_exponent_floats_as_numbers(tmp_path: Path) -> None:
    """An agent that writes ``lr: 5e-05`` by hand (YAML 1.1 would read a string) has its edit kept as the float."""
    ws = make_workspace(tmp_path / "ws", dvc=False)
    snap = guard.snapshot(ws)
    text = (ws / "params.yaml").read_text()
    (ws / "params.yaml").write_text(text.replace("lr: 0.0001", "lr: 5e-05").replace("omega: 30.0", "omega: 3e1"))
    report = guard.validate(snap, small_config().explore.ranges, ())
    assert report.reverted == []
    assert report.params == {**BASE_INR, "lr": 5e-05, "omega": 30.0}
    assert report.kept == ["inr.lr 0.0001 -> 5e-05"]  # 3e1 == 30.0: no change
