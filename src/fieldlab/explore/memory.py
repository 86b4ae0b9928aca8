"""Markdown memory of a study, rendered from the journal (never parsed back).

``<name>_analysis.md`` is the full log: one entry per iteration (node, parent, strategy, config, metrics, mutation,
observation) and a summary after every finished block; since the journal only grows, so does this file.
``<name>_memory.md`` is the bounded knowledge base (at most :data:`MAX_LINES` lines): the regime comparison table,
established principles (what each parameter move did to R2), the previous block's summary, the current block's
iterations and, last, the emerging observations.
"""

from __future__ import annotations

from typing import Any

from fieldlab.explore.agents import classify
from fieldlab.explore.blocks import TABLE_HEADER, BlockSummary, adjust_c, summarise
from fieldlab.explore.journal import Node, block_nodes
from fieldlab.explore.keys import flatten, ignored_by, model_of, residual_of

MAX_LINES = 500
METRIC_KEYS = (
    "final_r2",
    "pearson_r2",
    "slope",
    "intercept",
    "final_mse",
    "total_params",
    "compression_ratio",
    "training_time",
)


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _config(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in flatten(params).items())


def _metrics(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(metrics[k])}" for k in METRIC_KEYS if k in metrics)


def finished_blocks(nodes: list[Node], n_iter_block: int) -> list[int]:
    """Blocks that hold ``n_iter_block`` nodes or have a later block started."""
    blocks = sorted({n.block for n in nodes})
    return [b for b in blocks if len(block_nodes(nodes, b)) >= n_iter_block or b < blocks[-1]]


def entry(node: Node) -> list[str]:
    """The analysis entry of one node."""
    parent = "root" if node.parent is None else str(node.parent)
    lines = [f"### b{node.block}-i{node.iteration}: node {node.id} (parent {parent})", ""]
    seed = "" if node.seed is None else f"; seed {node.seed}"
    lines.append(f"- strategy: {node.strategy}; mutation: {node.mutation or '-'}{seed}")
    lines.append(f"- config: {_config(node.params)}")
    if node.r2 is None:
        lines.append(f"- status: FAILED: {node.error.strip().splitlines()[-1] if node.error.strip() else '?'}")
    else:
        lines.append(f"- metrics ({classify(node.r2)}): {_metrics(node.metrics)}")
    lines.append(f"- rationale: {node.rationale or '-'}")
    if node.observation:
        lines.append(f"- {node.observation}")
    if node.exp_name:
        lines.append(f"- experiment: {node.exp_name} {node.commit[:10]}")
    return [*lines, ""]


def summary_lines(s: BlockSummary) -> list[str]:
    best = "-" if s.best_r2 is None else f"{s.best_r2:.4f} (node {s.best_node})"
    c_next, why = adjust_c(s, s.ucb_c)
    return [
        f"Block {s.block} ({s.field_name}, frames {s.n_training_frames}): best R2 {best}; {s.n_nodes} nodes, "
        f"{s.n_failed} failed; branching rate {s.branching_rate:.2f}, improvement rate {s.improvement_rate:.2f}, "
        f"longest plateau {s.plateau}, longest same-parameter streak {s.same_param_streak}"
        f"{', field looks stochastic' if s.stochastic else ''}; ucb_c {s.ucb_c:.3g} -> {c_next:.3g} ({why}).",
        "",
    ]


def render_analysis(nodes: list[Node], name: str, n_iter_block: int) -> str:
    """Full log of the study."""
    done = set(finished_blocks(nodes, n_iter_block))
    lines = [f"# {name}: exploration analysis", "", "Rendered from journal.jsonl; one entry per iteration.", ""]
    for b in sorted({n.block for n in nodes}):
        lines += [f"## Block {b}", ""]
        for n in block_nodes(nodes, b):
            lines += entry(n)
        if b in done:
            lines += ["#### Block summary", "", *summary_lines(summarise(block_nodes(nodes, b)))]
    return "\n".join(lines).rstrip() + "\n"


def principles(nodes: list[Node]) -> list[str]:
    """For each single-parameter move (key, up/down): how often the child beat its parent's R2.

    Keys are dotted (``ngp.levels``); a key the child's model does not read is no move (it changed nothing).
    """
    by_id = {n.id: n for n in nodes}
    tally: dict[tuple[str, str], list[int]] = {}
    for n in nodes:
        p = by_id.get(n.parent) if n.parent is not None else None
        if p is None or p.r2 is None:
            continue
        new, old, model = flatten(n.params), flatten(p.params), model_of(n.params)
        diff = [k for k in new if new[k] != old.get(k) and not ignored_by(model, k, residual_of(n.params))]
        if len(diff) == 2 and "total_steps" in diff:  # the other key was mutated, total_steps was budget-capped
            diff.remove("total_steps")
        if len(diff) != 1:
            continue
        k = diff[0]
        a, b = old.get(k), new[k]
        way = ("up" if b > a else "down") if isinstance(a, int | float) and isinstance(b, int | float) else f"-> {b}"
        won = n.r2 is not None and n.r2 > p.r2
        tally.setdefault((k, way), []).append(int(won))
    out = []
    for (k, way), wins in sorted(tally.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        verdict = "helps" if sum(wins) * 2 > len(wins) else "does not help"
        out.append(f"- {k} {way}: improved R2 in {sum(wins)}/{len(wins)} tries ({verdict})")
    failed = [n for n in nodes if n.r2 is None]
    if failed:
        which = "; ".join(f"node {n.id} ({_config(n.params)})" for n in failed[:5])
        out.append(f"- {len(failed)} fits failed: {which}")
    return out or ["- (none yet)"]


def render_memory(nodes: list[Node], name: str, n_iter_block: int) -> str:
    """Bounded knowledge base (<= MAX_LINES lines)."""
    blocks = sorted({n.block for n in nodes})
    done = finished_blocks(nodes, n_iter_block)
    summaries = [summarise(block_nodes(nodes, b)) for b in done]
    head = [
        f"# {name}: exploration memory",
        "",
        "## Knowledge base",
        "",
        "### Regime comparison",
        "",
        *TABLE_HEADER.splitlines(),
    ]
    head += [s.table_row() for s in summaries] + ["", "### Established principles", ""]
    head += [*principles(nodes)[:60], ""]
    if summaries:
        head += ["## Previous block", "", *summary_lines(summaries[-1])]
    current = blocks[-1] if blocks and blocks[-1] not in done else None
    body: list[str] = []
    if current is not None:
        body = [f"## Current block {current}", ""]
        for n in block_nodes(nodes, current):
            r2 = "FAILED" if n.r2 is None else f"R2={n.r2:.4f}"
            body.append(f"- node {n.id} (parent {n.parent}): {n.strategy}, {n.mutation or '-'}: {r2}")
        body.append("")
    recent = [n for n in nodes if n.observation][-10:]
    tail = ["## Emerging observations", ""] + [f"- node {n.id}: {n.observation}" for n in recent]
    room = MAX_LINES - len(head) - len(tail)
    if len(body) > room:
        body = [*body[:2], "- (earlier iterations omitted)", *body[len(body) - room + 3 :]]
    return "\n".join((head + body + tail)[:MAX_LINES]).rstrip() + "\n"
