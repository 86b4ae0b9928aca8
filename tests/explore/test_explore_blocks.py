"""Block workflow: summary statistics, ucb_c adjustment, next regime; memory rendering bounds."""

from __future__ import annotations

import pytest
from explore_fakes import node

from fieldlab.explore.blocks import adjust_c, next_root, summarise
from fieldlab.explore.memory import MAX_LINES, render_analysis, render_memory


def test_summary_of_a_hand_built_block() -> None:
    """1 root 0.5; 2<-1 lr 0.6 (new best); 3<-1 lr 0.55; 4<-2 lr failed; 5<-2 omega 0.6; 6<-1 repeat of 1: 0.3.

    branching: parents vs previous node: 2:1=1 no, 3:1!=2 yes, 4:2!=3 yes, 5:2!=4 yes, 6:1!=5 yes -> 4/5 = 0.8;
    improvements after the first: only node 2 -> 1/5; plateau: nodes 3..6 -> 4; same-parameter streak: lr at
    2, 3, 4 -> 3; stochastic: node 1 and 6 share a config with R2 0.5 and 0.3, spread 0.2 > 0.1.
    """
    nodes = [
        node(1, None, 0.5),
        node(2, 1, 0.6, {"lr": 2e-4}, strategy="exploit", mutation="lr 0.0001 -> 0.0002"),
        node(3, 1, 0.55, {"lr": 5e-5}, strategy="exploit", mutation="lr 0.0001 -> 5e-05"),
        node(4, 2, None, {"lr": 4e-4}, strategy="exploit", mutation="lr 0.0002 -> 0.0004"),
        node(5, 2, 0.6, {"lr": 2e-4, "omega": 40.0}, strategy="exploit", mutation="omega 30.0 -> 40.0"),
        node(6, 1, 0.3, strategy="robustness-test", mutation="none (repeat)"),
    ]
    s = summarise(nodes)
    assert (s.best_node, s.best_r2, s.n_failed, s.field_name) == (2, 0.6, 1, "Jp")
    assert s.branching_rate == pytest.approx(0.8)
    assert s.improvement_rate == pytest.approx(0.2)
    assert (s.plateau, s.same_param_streak, s.stochastic) == (4, 3, True)
    c, why = adjust_c(s, 1.0)
    assert c == pytest.approx(1.25) and "plateau" in why  # branching 0.8 but improvement 0.2: no decrease


def test_adjust_c_for_a_chain_and_for_paying_branches() -> None:
    chain = [node(1, None, 0.5), node(2, 1, 0.6), node(3, 2, 0.7), node(4, 3, 0.8)]
    c, _ = adjust_c(summarise(chain), 1.0)
    assert c == pytest.approx(1.5)  # branching 0 -> x1.5; improving every time: no plateau
    bushy = [node(1, None, 0.5), node(2, 1, 0.6), node(3, 1, 0.7), node(4, 2, 0.8)]
    c, _ = adjust_c(summarise(bushy), 1.0)
    assert c == pytest.approx(1 / 1.5)
    assert adjust_c(summarise(chain), 4.0)[0] == 5.0  # clipped


def test_next_root_rotates_field_and_raises_frames() -> None:
    s = summarise([node(1, None, 0.5), node(2, 1, 0.9, {"omega": 40.0})])
    params, _ = next_root(s, "field", (48, 100, 200, 500))
    assert params["field_name"] == "F" and params["omega"] == 40.0  # carries the best config
    params, _ = next_root(s, "frames", (48, 100, 200, 500))
    assert params["n_training_frames"] == 100
    s500 = summarise([node(1, None, 0.5, {"n_training_frames": 500, "field_name": "C"})])
    assert next_root(s500, "frames", (48, 100, 200, 500))[0]["n_training_frames"] == 1000
    assert next_root(s500, "field", (48,))[0]["field_name"] == "Jp"


def test_memory_stays_bounded_and_analysis_keeps_everything() -> None:
    nodes = [node(1, None, 0.5, iteration=1, block=1)]
    nodes += [
        node(k, k - 1, 0.5 + k * 1e-4, {"lr": 1e-4}, iteration=k, observation=f"Visual: {k}") for k in range(2, 800)
    ]
    memory = render_memory(nodes, "inr", n_iter_block=1000)
    assert len(memory.splitlines()) <= MAX_LINES
    assert "earlier iterations omitted" in memory and "- node 799 (parent 798)" in memory
    assert memory.rstrip().splitlines()[-1] == "- node 799: Visual: 799"  # emerging observations come last
    assert render_analysis(nodes, "inr", 1000).count("### b1-i") == 799
