"""The rule-based agent: classify results, pick a parent by UCB, choose a strategy and one mutation.

Strategies, tried in this order at every iteration after a block's root (the first whose trigger holds wins):

``robustness-test``
    once per block, from its third node on: re-run the best config with R2 >= 0.99 under another seed (the driver
    runs it with ``seed + k``, :func:`fieldlab.explore.driver.repeat_seed`; a spread of R2 over repeats above 0.1
    marks the field stochastic, see :mod:`fieldlab.explore.blocks`).
``failure-probe``
    the last 3 nodes all reached R2 >= 0.95 and none of them was a probe: set one parameter of the best-UCB node
    to the far end of its range.
``recombine``
    two non-adjacent nodes (neither is the other's parent) with R2 > 0.95 whose configs differ, not recombined
    before, and no recombination in the last max(2, n_iter_block // 4) iterations: take the better config and
    adopt one differing parameter of the other.
``explore``
    max(1, n_iter_block // 4) consecutive successes (R2 >= 0.90) since the last ``explore``: mutate the best-UCB
    node outside the recent chain (the last node and its ancestors).
``forced-branch``
    at least 4 nodes and a branching rate below 0.2: mutate the best-UCB node other than the last one.
``random-branch``
    branching rate below 0.4, with probability 0.2: mutate a random successful node other than the last one.
``exploit`` / ``switch-param``
    mutate one parameter of the best-UCB node; when the last 4 mutations all changed the same parameter, change
    another one (``switch-param``).

Every choice draws from ``numpy_rng(seed, block, iteration)``, so a resumed study repeats the decision exactly.

With ``explore.parallel = k`` a round's k proposals are drawn one after another before any of them runs; those
already drawn are *pending* (``Context.pending``): virtual visits in the UCB (:mod:`fieldlab.explore.ucb`), their
strategies count as used (one robustness test, one probe, one recombination or explore move per round at most)
and their configs as seen, so the k differ, and each is still a child of a node of the block the serial rules
could have chosen.

Only keys that the config's model reads are mutated (:func:`fieldlab.explore.keys.mutable_keys`; ``ngp.*`` keys
are nested). ``total_steps`` is finally set from the time budget (:func:`~fieldlab.explore.cost.budget_steps`, from
the measured cost law of a training step): with ``explore.fill_budget`` (the default) every fit gets the steps that
fill ``explore.time_budget_s`` (within the range), so a move that makes a step cheaper buys steps and one that
makes it dearer costs steps, and ``total_steps`` itself is not mutated once a fit has measured the machine;
without it the steps are only capped. Neither counts as a mutation. A robustness re-run is never changed: a
different fit would not be a repeat.

A switch of ``model`` to a model the study has already fitted on the same field resumes from that model's best
fit (its own keys, lr, batch and periods; :func:`switch_model`): a SIREN does not inherit the hash grid's lr.

A proposal that, after the cap, repeats a config already run in the block is drawn again from the same generator
(up to :data:`MAX_REDRAWS` draws): under a binding budget a ``total_steps`` increase is capped back to its
parent's steps, and such a repeat would spend a fit on a known answer (robustness re-runs are repeats by design).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fieldlab.config import ExploreRanges
from fieldlab.core.seeding import numpy_rng
from fieldlab.explore import mutations as mut
from fieldlab.explore.cost import DEFAULT_PARTICLES, fitted_steps, machine_rate
from fieldlab.explore.journal import Node
from fieldlab.explore.keys import MUTABLE, get_value, has_key, model_of, mutable_keys, with_value
from fieldlab.explore.ucb import ucb_scores

GOOD, PROBE_R2, RECOMBINE_R2, SUCCESS_R2 = 0.99, 0.95, 0.95, 0.90
MIN_BRANCHING, RANDOM_BRANCHING, RANDOM_P, SAME_PARAM_STREAK = 0.2, 0.4, 0.2, 4
#: Draws of a proposal that repeats a config of the block (after the budget cap) before it is kept anyway.
MAX_REDRAWS = 8


def classify(r2: float | None) -> str:
    """excellent (> 0.995), good (0.990-0.995), moderate (0.90-0.99), poor (< 0.90) or failed (``None``)."""
    if r2 is None:
        return "failed"
    if r2 > 0.995:
        return "excellent"
    if r2 >= 0.99:
        return "good"
    return "moderate" if r2 >= 0.90 else "poor"


@dataclass(frozen=True)
class Proposal:
    """The next configuration: its parent, full ``inr`` params and why."""

    parent: int | None
    params: dict[str, Any]
    strategy: str
    mutation: str
    rationale: str


@dataclass(frozen=True)
class Context:
    """What an agent sees: the current block's nodes, every earlier node (for the cost history) and the round's
    proposals not yet run (``pending``, empty in a serial study)."""

    block: int
    iteration: int
    n_iter_block: int
    ucb_c: float
    nodes: list[Node]
    history: list[Node] = field(default_factory=list)
    pending: tuple[Proposal, ...] = ()

    @property
    def pending_parents(self) -> list[int | None]:
        """The parents of the pending proposals: the virtual visits of :func:`~fieldlab.explore.ucb.ucb_scores`."""
        return [p.parent for p in self.pending]


def branching_rate(nodes: list[Node]) -> float:
    """Fraction of non-root nodes whose parent is not the node created just before them."""
    kids = list(itertools.pairwise(nodes))
    if not kids:
        return 0.0
    return sum(n.parent != prev.id for prev, n in kids) / len(kids)


def chain(nodes: list[Node], last: Node) -> set[int]:
    """``last`` and its ancestors within ``nodes``."""
    by_id = {n.id: n for n in nodes}
    out, k = set(), last.id
    while k is not None and k in by_id and k not in out:
        out.add(k)
        k = by_id[k].parent
    return out


def _differ(a: dict[str, Any], b: dict[str, Any], key: str) -> bool:
    """Whether two configs hold the (dotted) ``key`` at different values, where ``b`` has it at all."""
    return has_key(b, key) and get_value(a, key) != get_value(b, key)


def switch_model(params: dict[str, Any], model: str, history: list[Node]) -> tuple[dict[str, Any], str]:
    """``params`` with ``model`` set; where ``history`` holds successful fits of ``model`` on the same field, the
    keys ``model`` reads (but ``total_steps``) come from the best of them. Returns (params, description)."""
    old = model_of(params)
    new = with_value(params, "model", model)
    same = [n for n in history if n.r2 is not None and model_of(n.params) == model
            and n.params.get("field_name") == params.get("field_name")]  # fmt: skip
    desc = f"model {old!r} -> {model!r}"
    if not same:
        return new, desc
    best = max(same, key=lambda n: n.r2)
    for key in MUTABLE[model]:
        if key != "total_steps" and has_key(best.params, key):
            new = with_value(new, key, get_value(best.params, key))
    return new, f"{desc} (its best fit so far, node {best.id})"


def mutated_key(node: Node) -> str | None:
    """The parameter a single-parameter mutation changed (first word of ``mutation``)."""
    if node.strategy in ("root", "robustness-test", "recombine") or not node.mutation:
        return None
    return node.mutation.split()[0]


class RuleAgent:
    """Deterministic rule-based agent (see the module docstring for the strategies)."""

    def __init__(self, ranges: ExploreRanges, time_budget_s: float, seed: int = 0, fill_budget: bool = True) -> None:
        self.ranges = ranges
        self.time_budget_s = time_budget_s
        self.seed = seed
        self.fill_budget = fill_budget
        self._fixed: tuple[str, ...] = ()  # keys the budget decides in the current proposal

    def propose(self, ctx: Context) -> Proposal:
        rng = numpy_rng(self.seed, ctx.block, ctx.iteration)
        measured = machine_rate(self._past(ctx)) is not None
        self._fixed = ("total_steps",) if self.fill_budget and measured else ()
        seen = [n.params for n in ctx.nodes] + [p.params for p in ctx.pending]
        for draw in range(MAX_REDRAWS):
            prop = self.fit_budget(self._choose(ctx, rng), ctx)
            if prop.strategy == "robustness-test" or prop.params not in seen:
                if draw:
                    prop = replace(
                        prop, rationale=prop.rationale + f"; draw {draw + 1} (the earlier ones repeated a run)"
                    )
                return prop
        return replace(prop, rationale=prop.rationale + f"; repeats a run after {MAX_REDRAWS} draws")

    # ---- strategy selection ------------------------------------------------------------------------------------
    def _choose(self, ctx: Context, rng: np.random.Generator) -> Proposal:
        nodes = ctx.nodes
        ok = [n for n in nodes if n.r2 is not None]
        if not ok:  # everything failed so far: step back from the last config
            last = nodes[-1]
            new, desc = self._mutate(last.params, rng, None, ctx)
            return Proposal(last.id, new, "exploit", desc, "no successful node in this block yet; mutate the last")
        scores = ucb_scores(nodes, ctx.ucb_c, ctx.pending_parents)
        by_id = {n.id: n for n in nodes}
        best_ucb = by_id[scores[0].node]
        last = nodes[-1]
        drawn = [p.strategy for p in ctx.pending]  # strategies of the round's pending proposals
        strategies = [n.strategy for n in nodes] + drawn

        good = [n for n in ok if n.r2 >= GOOD]
        if len(nodes) >= 3 and "robustness-test" not in strategies and good:
            target = max(good, key=lambda n: n.r2)
            if sum(n.params == target.params for n in nodes) < 2:
                why = f"re-run node {target.id} (R2={target.r2:.4f}) to measure run-to-run variance"
                return Proposal(target.id, dict(target.params), "robustness-test", "none (repeat)", why)

        tail = nodes[-3:]
        strong_tail = len(tail) == 3 and all(n.r2 is not None and n.r2 >= PROBE_R2 for n in tail)
        if strong_tail and "failure-probe" not in [n.strategy for n in tail] + drawn:
            key = str(rng.choice(self._keys(best_ucb.params)))
            if key == "model":
                new, desc = self._switch(best_ucb.params, rng, ctx)
            else:
                new, desc = mut.extreme(best_ucb.params, key, rng, self.ranges)
            why = f"3 consecutive R2 >= {PROBE_R2}: probe where node {best_ucb.id} breaks"
            return Proposal(best_ucb.id, new, "failure-probe", desc, why)

        cool = max(2, ctx.n_iter_block // 4)
        if "recombine" not in strategies[-cool:]:
            pair = self._recombine_pair(nodes, ok)
            if pair is not None:
                better, other = pair
                diff = [k for k in self._keys(better.params) if _differ(better.params, other.params, k)]
                key = str(rng.choice(diff))
                old, value = get_value(better.params, key), get_value(other.params, key)
                if key == "model":
                    new, _ = switch_model(better.params, value, ctx.history)
                else:
                    new = with_value(better.params, key, value)
                desc = f"recombine {better.id}+{other.id}: {key} {old!r} -> {value!r}"
                why = f"nodes {better.id} and {other.id} both R2 > {RECOMBINE_R2}; adopt {key} of the latter"
                return Proposal(better.id, new, "recombine", desc, why)

        streak = 0
        for n in reversed(nodes if "explore" not in drawn else []):  # a drawn explore move ends the streak
            if n.strategy == "explore" or n.r2 is None or n.r2 < SUCCESS_R2:
                break
            streak += 1
        if streak >= max(1, ctx.n_iter_block // 4):
            recent = chain(nodes, last)
            outside = [by_id[s.node] for s in scores if s.node not in recent]
            if outside:
                parent = outside[0]
                new, desc = self._mutate(parent.params, rng, None, ctx)
                why = f"{streak} consecutive successes: branch from node {parent.id} outside the recent chain"
                return Proposal(parent.id, new, "explore", desc, why)

        rate = branching_rate(nodes)
        others = [by_id[s.node] for s in scores if s.node != last.id]
        if len(nodes) >= 4 and rate < MIN_BRANCHING and others:
            parent = others[0]
            new, desc = self._mutate(parent.params, rng, None, ctx)
            why = f"branching rate {rate:.2f} < {MIN_BRANCHING}: branch from node {parent.id}"
            return Proposal(parent.id, new, "forced-branch", desc, why)
        if others and rate < RANDOM_BRANCHING and rng.random() < RANDOM_P:
            parent = others[int(rng.integers(len(others)))]
            new, desc = self._mutate(parent.params, rng, None, ctx)
            why = f"branching rate {rate:.2f} < {RANDOM_BRANCHING}: random branch from node {parent.id}"
            return Proposal(parent.id, new, "random-branch", desc, why)

        keys = [mutated_key(n) for n in nodes[-SAME_PARAM_STREAK:]]
        stuck = keys[0] if len(keys) == SAME_PARAM_STREAK and keys[0] is not None and len(set(keys)) == 1 else None
        new, desc = self._mutate(best_ucb.params, rng, stuck, ctx)
        if stuck is not None:
            why = f"{stuck} mutated {SAME_PARAM_STREAK} times in a row: change another parameter"
            return Proposal(best_ucb.id, new, "switch-param", desc, why)
        why = f"highest UCB {scores[0].ucb:.3f} at node {best_ucb.id} ({classify(best_ucb.r2)})"
        return Proposal(best_ucb.id, new, "exploit", desc, why)

    def _recombine_pair(self, nodes: list[Node], ok: list[Node]) -> tuple[Node, Node] | None:
        done = {n.mutation.split()[1].split(":")[0] for n in nodes if n.strategy == "recombine"}
        strong = sorted((n for n in ok if n.r2 > RECOMBINE_R2), key=lambda n: -n.r2)
        for i, a in enumerate(strong):
            for b in strong[i + 1 :]:
                if a.parent == b.id or b.parent == a.id or f"{a.id}+{b.id}" in done:
                    continue
                if any(_differ(a.params, b.params, k) for k in self._keys(a.params)):
                    return a, b
        return None

    def _keys(self, params: dict) -> list[str]:
        """The keys a move may change: the model's mutable keys but those the budget decides."""
        return [k for k in mutable_keys(params) if k not in self._fixed]

    def _switch(self, params: dict, rng: np.random.Generator, ctx: Context) -> tuple[dict, str]:
        model = str(rng.choice([m for m in MUTABLE if m != model_of(params)]))
        return switch_model(params, model, ctx.history)

    def _mutate(self, params: dict, rng: np.random.Generator, avoid: str | None, ctx: Context) -> tuple[dict, str]:
        keys = [k for k in self._keys(params) if k != avoid]
        key = str(rng.choice(keys))
        if key == "model":
            return self._switch(params, rng, ctx)
        return mut.mutate(params, key, rng, self.ranges)

    # ---- time budget -------------------------------------------------------------------------------------------
    @staticmethod
    def _past(ctx: Context) -> list[tuple[dict[str, Any], float]]:
        return [(n.params, float(n.metrics.get("training_time", 0.0))) for n in ctx.history if n.r2 is not None]

    def fit_budget(self, prop: Proposal, ctx: Context) -> Proposal:
        """Set ``total_steps`` from the time budget: filled to it (``fill_budget``) or only capped by it; a
        robustness re-run repeats its parent's fit exactly. Unchanged before any fit has measured the machine."""
        if prop.strategy == "robustness-test":
            return prop
        done = [n for n in ctx.history if n.r2 is not None]
        counts = [n.metrics["n_particles"] for n in done if isinstance(n.metrics.get("n_particles"), int | float)]
        n_particles = int(counts[-1]) if counts else DEFAULT_PARTICLES
        steps = fitted_steps(
            prop.params, self._past(ctx), self.time_budget_s, self.ranges, self.fill_budget, n_particles
        )
        if steps is None or steps == prop.params["total_steps"]:
            return prop
        params = dict(prop.params)
        old, params["total_steps"] = params["total_steps"], steps
        verb = "fill" if steps > old else "fit"
        note = f"; total_steps {old} -> {steps} to {verb} the {self.time_budget_s:g} s budget"
        return Proposal(prop.parent, params, prop.strategy, prop.mutation, prop.rationale + note)


def observe(metrics: dict[str, Any]) -> str:
    """A ``Visual:`` line from the panel's numbers: per-component SSIM, slope/intercept and where the residual sits."""
    parts = []
    ssim = metrics.get("ssim")
    if isinstance(ssim, dict):
        ssim = list(ssim.items())
    elif isinstance(ssim, list):
        ssim = [(str(i), v) for i, v in enumerate(ssim)]
    if ssim:
        parts.append("SSIM " + ", ".join(f"{k}={float(v):.3f}" for k, v in ssim))
        worst = min(ssim, key=lambda kv: float(kv[1]))
        parts.append(f"residual concentrated in component {worst[0]} (lowest SSIM {float(worst[1]):.3f})")
    slope = metrics.get("slope")
    if isinstance(slope, int | float):
        if slope < 0.97:
            parts.append(f"slope {slope:.3f}: extremes under-predicted (amplitude compressed)")
        elif slope > 1.03:
            parts.append(f"slope {slope:.3f}: extremes over-predicted")
        else:
            parts.append(f"slope {slope:.3f}: amplitude right")
    if isinstance(metrics.get("intercept"), int | float):
        parts.append(f"intercept {metrics['intercept']:.3g}")
    return "Visual: " + ("; ".join(parts) if parts else "no panel numbers in the metrics")
