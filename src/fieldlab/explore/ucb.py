"""UCB scores of the nodes of one block's search tree and their ``ucb_scores.txt`` rendering.

For node k of a block with N nodes,

    UCB(k) = R2_k + c * sqrt(ln N / n_k),

where R2_k is the node's ``final_r2``, n_k counts its visits (the node itself plus all its descendants in the
block, failed ones included) and c is ``explore.ucb_c`` (UCB1 uses c = sqrt(2)). Failed nodes count towards N and
towards their ancestors' visits but get no score: they cannot be a parent.

A round of ``explore.parallel = k`` proposals is chosen before any of them has run: each proposal already made in
the round is a *pending* node, a virtual visit (it counts in N and in the visits of its parent and the parent's
ancestors, like a failed node, and has no R2), so the next proposal's UCB favours another branch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fieldlab.explore.journal import Node


@dataclass(frozen=True)
class Score:
    """UCB score of one node."""

    node: int
    parent: int | None
    visits: int
    r2: float
    ucb: float

    def line(self) -> str:
        parent = "root" if self.parent is None else str(self.parent)
        return f"Node {self.node}: UCB={self.ucb:.3f}, parent={parent}, visits={self.visits}, R2={self.r2:.3f}"


def visits(nodes: list[Node]) -> dict[int, int]:
    """n_k = 1 + number of descendants of k among ``nodes`` (parents outside ``nodes`` are ignored)."""
    ids = {n.id for n in nodes}
    parent = {n.id: n.parent for n in nodes}
    count = dict.fromkeys(ids, 0)
    for n in nodes:
        k: int | None = n.id
        while k is not None and k in ids:
            count[k] += 1
            k = parent[k]
    return count


def ucb_scores(nodes: list[Node], c: float, pending: Sequence[int | None] = ()) -> list[Score]:
    """Scores of the successful nodes of one block, highest first (ties: lower id first).

    Parameters
    ----------
    nodes
        All nodes of the block (failed ones included: they count in N and in the visits).
    c
        Exploration constant, >= 0.
    pending
        The parents of the round's pending proposals (virtual visits, module notes); empty for a serial study.

    Examples
    --------
    Root (R2 0.9) with one child (R2 0.997): N = 2, n_root = 2, n_child = 1.

    >>> root = Node(id=1, parent=None, block=1, iteration=1, params={}, metrics={"final_r2": 0.9})
    >>> kid = Node(id=2, parent=1, block=1, iteration=2, params={}, metrics={"final_r2": 0.997})
    >>> [s.line() for s in ucb_scores([root, kid], 1.414)][0]
    'Node 2: UCB=2.174, parent=1, visits=1, R2=0.997'

    A pending child of node 2: N = 3, n_root = 3, n_child = 2, so node 2's bonus shrinks.

    >>> [s.line() for s in ucb_scores([root, kid], 1.414, pending=[2])][0]
    'Node 2: UCB=2.045, parent=1, visits=2, R2=0.997'
    """
    if not nodes:
        return []
    n_total = len(nodes) + len(pending)
    n_visits = visits(nodes)
    parent = {n.id: n.parent for n in nodes}
    for k in pending:  # a virtual visit of the pending node's parent and of its ancestors
        while k is not None and k in n_visits:
            n_visits[k] += 1
            k = parent[k]
    log_n = math.log(n_total)
    scores = [
        Score(n.id, n.parent, n_visits[n.id], n.r2, n.r2 + c * math.sqrt(log_n / n_visits[n.id]))
        for n in nodes
        if n.r2 is not None
    ]
    return sorted(scores, key=lambda s: (-s.ucb, s.node))


def render_scores(scores: list[Score]) -> str:
    """``ucb_scores.txt``: one line per scored node, highest UCB first."""
    return "".join(s.line() + "\n" for s in scores)
