"""UCB(k) = R2_k + c sqrt(ln N / n_k) on hand-computed trees."""

from __future__ import annotations

import math

import pytest
from explore_fakes import node

from fieldlab.explore.ucb import render_scores, ucb_scores, visits


def test_two_nodes_matches_the_documented_line() -> None:
    """Root R2 0.9, child R2 0.997, c = 1.414: N = 2, n_child = 1 -> 0.997 + 1.414 sqrt(ln 2) = 2.17422."""
    scores = ucb_scores([node(1, None, 0.9), node(2, 1, 0.997)], 1.414)
    assert scores[0].node == 2
    assert scores[0].ucb == pytest.approx(0.997 + 1.414 * math.sqrt(math.log(2)), abs=1e-12)
    assert render_scores(scores).splitlines()[0] == "Node 2: UCB=2.174, parent=1, visits=1, R2=0.997"
    # root: 0.9 + 1.414 sqrt(ln 2 / 2) = 0.9 + 1.414 * 0.5887050 = 1.7324289
    assert render_scores(scores).splitlines()[1] == "Node 1: UCB=1.732, parent=root, visits=2, R2=0.900"


def test_failed_nodes_count_in_n_and_visits_but_get_no_score() -> None:
    """Tree 1 -> 2 -> 3 and 1 -> 4 (failed), c = 1, N = 4, ln 4 = 1.3862944.

    n_1 = 4, n_2 = 2, n_3 = 1: UCB_1 = 0.9 + sqrt(1.3862944 / 4) = 1.4887050,
    UCB_2 = 0.95 + sqrt(1.3862944 / 2) = 1.7825546, UCB_3 = 0.99 + sqrt(1.3862944) = 2.1674100.
    """
    nodes = [node(1, None, 0.9), node(2, 1, 0.95), node(3, 2, 0.99), node(4, 1, None)]
    assert visits(nodes) == {1: 4, 2: 2, 3: 1, 4: 1}
    scores = ucb_scores(nodes, 1.0)
    assert [s.node for s in scores] == [3, 2, 1]
    assert [s.ucb for s in scores] == pytest.approx([2.1674100, 1.7825546, 1.4887050], abs=1e-7)


def test_zero_c_ranks_by_r2_and_ties_by_id() -> None:
    nodes = [node(1, None, 0.5), node(2, 1, 0.8), node(3, 1, 0.8), node(4, 2, 0.7)]
    assert [s.node for s in ucb_scores(nodes, 0.0)] == [2, 3, 4, 1]


def test_single_root_has_no_bonus_and_empty_block_no_scores() -> None:
    """N = 1: ln 1 = 0, so UCB = R2 whatever c is."""
    assert ucb_scores([node(1, None, 0.7)], 5.0)[0].ucb == pytest.approx(0.7)
    assert ucb_scores([], 1.0) == []
    assert render_scores([]) == ""


def test_pending_proposals_are_virtual_visits() -> None:
    """Tree 1 (R2 0.5) -> 2 (0.6), 1 -> 3 (0.55), c = 1; pending children count in N and in their ancestors' visits.

    A pending child of 2: N = 4, n_1 = 4, n_2 = 2, n_3 = 1, ln 4 = 1.3862944:
    UCB_1 = 0.5 + sqrt(1.3862944 / 4) = 1.0887050, UCB_2 = 0.6 + sqrt(1.3862944 / 2) = 1.4325546,
    UCB_3 = 0.55 + sqrt(1.3862944) = 1.7274100.
    Pending children of 2 and of 3: N = 5, n_1 = 5, n_2 = n_3 = 2, ln 5 = 1.6094379:
    UCB_1 = 0.5 + sqrt(1.6094379 / 5) = 1.0673514, UCB_2 = 0.6 + sqrt(1.6094379 / 2) = 1.4970613,
    UCB_3 = 0.55 + 0.8970613 = 1.4470613.
    """
    nodes = [node(1, None, 0.5), node(2, 1, 0.6), node(3, 1, 0.55)]
    one = ucb_scores(nodes, 1.0, pending=[2])
    assert [(s.node, s.visits) for s in one] == [(3, 1), (2, 2), (1, 4)]
    assert [s.ucb for s in one] == pytest.approx([1.7274100, 1.4325546, 1.0887050], abs=1e-7)
    two = ucb_scores(nodes, 1.0, pending=[2, 3])
    assert [(s.node, s.visits) for s in two] == [(2, 2), (3, 2), (1, 5)]
    assert [s.ucb for s in two] == pytest.approx([1.4970613, 1.4470613, 1.0673514], abs=1e-7)


def test_pending_visit_reaches_every_ancestor() -> None:
    """Chain 1 -> 2 -> 3 with a pending child of 3: n_1 = 4, n_2 = 3, n_3 = 2 (N = 4), as if the child had run."""
    nodes = [node(1, None, 0.5), node(2, 1, 0.6), node(3, 2, 0.7)]
    visited = {s.node: s.visits for s in ucb_scores(nodes, 1.0, pending=[3])}
    assert visited == {1: 4, 2: 3, 3: 2}
    ran = {s.node: s.visits for s in ucb_scores([*nodes, node(4, 3, None)], 1.0)}
    assert {k: ran[k] for k in visited} == visited
