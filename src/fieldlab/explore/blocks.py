"""The block workflow: summarise a finished block, adjust ucb_c, and choose the next block's regime and root.

All of it is a pure function of the journal, so a resumed study recomputes exactly what the first run decided.

Adjustment of c for the next block (clipped to [0.1, 5]):
branching rate < 0.2 -> c x 1.5 (the tree was a chain: explore more); a plateau of >= 3 iterations without a new
best and an improvement rate < 0.25 -> c x 1.25; branching rate > 0.6 and improvement rate >= 0.25 -> c / 1.5
(branches pay off: exploit more).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fieldlab.explore.agents import branching_rate, mutated_key
from fieldlab.explore.journal import Node
from fieldlab.explore.mutations import FIELDS

STOCHASTIC_SPREAD = 0.1


@dataclass(frozen=True)
class BlockSummary:
    """Statistics of one finished block."""

    block: int
    field_name: str
    n_training_frames: int | None
    model: str
    n_nodes: int
    n_failed: int
    best_node: int | None
    best_r2: float | None
    best_params: dict[str, Any]
    branching_rate: float
    improvement_rate: float
    plateau: int
    same_param_streak: int
    stochastic: bool
    ucb_c: float

    def table_row(self) -> str:
        best = "-" if self.best_r2 is None else f"{self.best_r2:.4f}"
        frames = "-" if self.n_training_frames is None else str(self.n_training_frames)
        return (
            f"| {self.block} | {self.field_name} | {frames} | {self.model} | {best} | {self.n_nodes} | {self.n_failed} "
            f"| {self.branching_rate:.2f} | {self.improvement_rate:.2f} | {'yes' if self.stochastic else 'no'} |"
        )


TABLE_HEADER = (
    "| block | field | frames | best model | best R2 | nodes | failed | branching | improvement | stochastic |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def summarise(nodes: list[Node]) -> BlockSummary:
    """Summary of one block's nodes (in creation order).

    improvement rate = fraction of nodes after the first that set a new best R2; plateau = the longest run of
    nodes without a new best; same-parameter streak = the longest run of consecutive mutations of one parameter;
    stochastic = some configuration run more than once spread (max - min R2) > 0.1.
    """
    ok = [n for n in nodes if n.r2 is not None]
    best = max(ok, key=lambda n: n.r2) if ok else None
    best_so_far, improvements, run, plateau = None, 0, 0, 0
    for n in nodes:
        if n.r2 is not None and (best_so_far is None or n.r2 > best_so_far):
            improvements += best_so_far is not None
            best_so_far, run = n.r2, 0
        else:
            run += 1
            plateau = max(plateau, run)
    streak, longest, prev = 0, 0, None
    for n in nodes:
        key = mutated_key(n)
        streak = streak + 1 if key is not None and key == prev else (1 if key is not None else 0)
        prev, longest = key, max(longest, streak)
    groups: dict[str, list[float]] = {}
    for n in ok:
        groups.setdefault(repr(sorted(n.params.items())), []).append(n.r2)
    stochastic = any(len(v) > 1 and max(v) - min(v) > STOCHASTIC_SPREAD for v in groups.values())
    first = nodes[0].params if nodes else {}
    return BlockSummary(
        block=nodes[0].block if nodes else 0,
        field_name=str(first.get("field_name", "-")),
        n_training_frames=first.get("n_training_frames"),
        model=str(best.params.get("model", "-")) if best else "-",
        n_nodes=len(nodes),
        n_failed=len(nodes) - len(ok),
        best_node=best.id if best else None,
        best_r2=best.r2 if best else None,
        best_params=dict(best.params) if best else dict(first),
        branching_rate=branching_rate(nodes),
        improvement_rate=improvements / max(1, len(nodes) - 1),
        plateau=plateau,
        same_param_streak=longest,
        stochastic=stochastic,
        ucb_c=nodes[0].ucb_c if nodes else 0.0,
    )


def adjust_c(summary: BlockSummary, c: float) -> tuple[float, str]:
    """New ucb_c for the next block and the reason (see the module docstring)."""
    reasons = []
    if summary.branching_rate < 0.2:
        c, reasons = c * 1.5, [*reasons, f"branching {summary.branching_rate:.2f} < 0.2: c x1.5"]
    if summary.plateau >= 3 and summary.improvement_rate < 0.25:
        c, reasons = c * 1.25, [*reasons, f"plateau of {summary.plateau}: c x1.25"]
    if summary.branching_rate > 0.6 and summary.improvement_rate >= 0.25:
        c, reasons = c / 1.5, [*reasons, "branches paid off: c /1.5"]
    c = min(max(c, 0.1), 5.0)
    return c, "; ".join(reasons) or "kept"


def next_root(summary: BlockSummary, mode: str, frames_schedule: tuple[int, ...]) -> tuple[dict[str, Any], str]:
    """Root params of the next block: the best config of this one with the next field or frame count.

    Fields rotate Jp -> F -> S -> C -> Jp; frames move to the next schedule entry above the current count (past the
    end: doubled).
    """
    params = dict(summary.best_params)
    if mode == "field" and "field_name" in params:
        i = FIELDS.index(params["field_name"]) if params["field_name"] in FIELDS else -1
        params["field_name"] = FIELDS[(i + 1) % len(FIELDS)]
        return params, f"field {summary.field_name} -> {params['field_name']}"
    if mode == "frames" and "n_training_frames" in params:
        now = int(params["n_training_frames"])
        params["n_training_frames"] = next((f for f in frames_schedule if f > now), now * 2)
        return params, f"n_training_frames {now} -> {params['n_training_frames']}"
    return params, "same regime, from the best config"
