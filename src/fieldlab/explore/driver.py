"""The exploration driver: blocks of iterations, each one fit, recorded in the journal, outputs re-rendered.

For block b = 1..n_blocks and iteration i = 1..n_iter_block: iteration 1 runs the block's root (block 1: the
baseline ``inr`` section clipped into the ranges; later blocks: the previous block's best config moved to the
next regime, see :mod:`fieldlab.explore.blocks`); later iterations ask the agent. Each fit runs as experiment
``b{b}-i{i}`` (or in a subprocess with ``--no-dvc``), becomes one journal node (a failed fit a failed node), and
``ucb_scores.txt``, ``configs/iter_NNN.yaml``, the markdown files and the block's pictures are rewritten.

Rounds (``explore.parallel = k``): after a block's root, which runs alone (every later proposal needs a parent in
the block), the next k iterations form a round: the agent proposes them one after another, each seeing the
earlier ones as pending (virtual visits, :mod:`fieldlab.explore.ucb`), then all k run at once
(:mod:`fieldlab.explore.batch` on this machine, :mod:`fieldlab.explore.remote` on a cluster) and become nodes in
node-id order, with the same records a serial study would write for the same proposals. k = 1 is the serial loop.

Resume: the journal holds only finished nodes, so the loop skips every (block, iteration) already there and
re-runs the interrupted one (round); every decision depends only on the journal and the seed, so it is the same one.
The baseline params are saved as ``baseline_params.yaml`` in the output directory on the first start and
re-used on resume (an interrupted run may have left params.yaml rewritten).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from fieldlab.config import Config, yaml_load
from fieldlab.core.io import atomic_open
from fieldlab.errors import ConfigError
from fieldlab.explore import blocks as blk
from fieldlab.explore.agents import Context, Proposal, RuleAgent, observe
from fieldlab.explore.command_agent import CommandAgent
from fieldlab.explore.journal import FAILED, OK, Journal, Node, block_nodes
from fieldlab.explore.memory import render_analysis, render_memory
from fieldlab.explore.mutations import clamp_params
from fieldlab.explore.runners import DvcRunner, Job, RunResult, SubprocessRunner
from fieldlab.explore.ucb import render_scores, ucb_scores

Logger = Callable[[str], None]


class Runner(Protocol):
    """Runs one fit; a runner of rounds also has ``run_many(jobs: list[Job]) -> list[RunResult]`` (job order)."""

    def run(self, name: str, inr: dict[str, Any], seed: int | None = None) -> RunResult: ...


class Agent(Protocol):
    """Proposes the configuration of one iteration (the block root included) from what the context shows."""

    def propose(self, ctx: Context) -> Proposal: ...


@dataclass(frozen=True)
class Study:
    """Where and how long: workspace (repo root), output directory, blocks and iterations per block."""

    workspace: Path
    out: Path
    n_blocks: int
    n_iter_block: int
    use_dvc: bool = True
    resume: bool = False


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _write(path: Path, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def block_c(nodes: list[Node], block: int, c0: float) -> float:
    """ucb_c of ``block``: c0 for block 1, then adjusted after each finished block (pure function of the journal)."""
    c = c0
    for b in range(1, block):
        done = block_nodes(nodes, b)
        if done:
            c, _ = blk.adjust_c(blk.summarise(done), c)
    return c


def block_root(nodes: list[Node], block: int, baseline_inr: dict[str, Any], cfg: Config) -> tuple[dict, str]:
    """Root params of ``block`` and why."""
    ex = cfg.explore
    if block == 1 or not block_nodes(nodes, block - 1):
        return clamp_params(baseline_inr, ex.ranges), "baseline config"
    params, why = blk.next_root(blk.summarise(block_nodes(nodes, block - 1)), ex.next_block, ex.frames_schedule)
    return clamp_params(params, ex.ranges), why


def render_outputs(nodes: list[Node], cfg: Config, out: Path, n_iter_block: int, block: int,
                   pictures: bool = True) -> None:  # fmt: skip
    """Rewrite ucb_scores.txt, both markdown files and (with ``pictures``) the block's pictures from ``nodes``."""
    from fieldlab.explore.plots import plot_block

    cur = block_nodes(nodes, block)
    _write(out / "ucb_scores.txt", render_scores(ucb_scores(cur, block_c(nodes, block, cfg.explore.ucb_c))))
    _write(out / f"{cfg.explore.name}_analysis.md", render_analysis(nodes, cfg.explore.name, n_iter_block))
    _write(out / f"{cfg.explore.name}_memory.md", render_memory(nodes, cfg.explore.name, n_iter_block))
    if cur and pictures:
        plot_block(cur, out, block)


def _load_baseline(study: Study) -> tuple[str, dict[str, Any]]:
    """The baseline params (text and parsed): ``baseline_params.yaml`` on resume, else saved there from params.yaml."""
    out, ws = study.out, study.workspace
    base_file = out / "baseline_params.yaml"
    if study.resume and base_file.is_file():
        baseline_text = base_file.read_text()
    else:
        if not (ws / "params.yaml").is_file():
            raise ConfigError(f"{ws / 'params.yaml'}: params file not found")
        baseline_text = (ws / "params.yaml").read_text()
        out.mkdir(parents=True, exist_ok=True)
        _write(base_file, baseline_text)
    baseline = yaml_load(baseline_text) or {}
    if not isinstance(baseline.get("inr"), dict) or not baseline["inr"]:
        raise ConfigError(f"{base_file}: inr section missing or empty: expected the INR parameters to explore")
    return baseline_text, baseline


def _default_runner(
    cfg: Config, study: Study, baseline_text: str, baseline: dict[str, Any], stack: contextlib.ExitStack
) -> Runner:
    """``dvc exp run`` from the baseline params (reset into params.yaml now), or a subprocess with ``--no-dvc``.

    With ``explore.parallel > 1``: DVC's queue (``cluster.address`` ``""`` or ``"local"``), Dask tasks on the
    cluster's client, held open in ``stack`` (a scheduler or batch queue), or k processes with ``--no-dvc``, which
    always run on this machine.
    """
    ex = cfg.explore
    if ex.parallel > 1:
        from fieldlab.explore.batch import PoolRunner, QueueRunner

        if not study.use_dvc:
            return PoolRunner(study.workspace, ex.stage_cmd, ex.metrics_file, baseline, ex.stage)
        if cfg.cluster.address in ("", "local"):
            runner: DvcRunner = QueueRunner(study.workspace, ex.stage, ex.metrics_file, baseline_text, ex.parallel)
        else:
            from fieldlab.core.cluster import open_client
            from fieldlab.explore.remote import ClusterRunner

            client = stack.enter_context(open_client(cfg.cluster))
            runner = ClusterRunner(study.workspace, ex.stage, ex.metrics_file, baseline_text, client)
        runner.reset_params()
        return runner
    if study.use_dvc:
        runner = DvcRunner(study.workspace, ex.stage, ex.metrics_file, baseline_text)
        runner.reset_params()
        return runner
    return SubprocessRunner(study.workspace, ex.stage_cmd, ex.metrics_file, baseline)


@dataclass
class _Proposer:
    """Who decides each iteration: the block root, then the command agent or the rule agent.

    Iteration 1 of a block (or one whose block has no node yet) runs the block's root; later iterations ask the
    command agent (``explore.agent = command``) or else the rule agent, which also fits the root's and the command
    agent's proposals into the time budget.
    """

    cfg: Config
    study: Study
    baseline_text: str
    baseline: dict[str, Any]
    rule: RuleAgent
    command: CommandAgent | None

    @classmethod
    def create(cls, cfg: Config, study: Study, baseline_text: str, baseline: dict[str, Any]) -> _Proposer:
        ex, out, ws = cfg.explore, study.out, study.workspace
        rule = RuleAgent(ex.ranges, ex.time_budget_s, cfg.seed, ex.fill_budget)
        command = None
        if ex.agent == "command":
            inside = out.resolve().is_relative_to(ws.resolve())
            skip = (out.resolve().relative_to(ws.resolve()).as_posix(),) if inside else ()
            command = CommandAgent(ex, ws, "params.yaml", skip)
        return cls(cfg, study, baseline_text, baseline, rule, command)

    def propose(self, ctx: Context) -> Proposal:
        """The proposal for iteration ``ctx.iteration`` of block ``ctx.block``, given every node so far."""
        b, i, cur, nodes = ctx.block, ctx.iteration, ctx.nodes, ctx.history
        if i == 1 or not cur:
            _write(self.study.out / "ucb_scores.txt", "")  # block boundary: the next parent is the root
            params, why = block_root(nodes, b, self.baseline["inr"], self.cfg)
            return self.rule.fit_budget(Proposal(None, params, "root", "", f"block root: {why}"), ctx)
        if self.command is not None:
            memory = render_memory(nodes, self.cfg.explore.name, self.study.n_iter_block)
            try:
                scores = render_scores(ucb_scores(cur, ctx.ucb_c, ctx.pending_parents))
                prop = self.command.propose(ctx, self.baseline, memory, scores)
            finally:
                # the agent saw the parent's config there
                (self.study.workspace / "params.yaml").write_text(self.baseline_text)
            return self.rule.fit_budget(prop, ctx)
        return self.rule.propose(ctx)


def _write_iteration_config(out: Path, node_id: int, block: int, iteration: int, prop: Proposal) -> None:
    """``configs/iter_NNN.yaml``: the node, its place in the study and the full ``inr`` params it runs."""
    record = {
        "node": node_id,
        "parent": prop.parent,
        "block": block,
        "iteration": iteration,
        "strategy": prop.strategy,
        "mutation": prop.mutation,
        "inr": prop.params,
    }
    _write(out / "configs" / f"iter_{node_id:03d}.yaml", yaml.safe_dump(record, sort_keys=False))


def repeat_seed(prop: Proposal, history: Sequence[Node | Proposal], seed: int) -> int | None:
    """The seed of a robustness repeat: ``seed + k`` for the k-th repeat of the config, ``None`` otherwise.

    ``history`` holds the earlier nodes and the round's earlier proposals. A repeat under the study's own seed would
    measure nothing: a CPU fit is bit-identical for a given seed, and ``dvc exp run`` would restore it from the run
    cache without fitting.
    """
    if prop.strategy != "robustness-test":
        return None
    return seed + max(1, sum(n.params == prop.params for n in history))


@dataclass(frozen=True)
class Planned:
    """A proposal of the round, with its node id, experiment name, context and seed (``None``: the study's)."""

    prop: Proposal
    node_id: int
    name: str
    ctx: Context
    seed: int | None


def _run_node(runner: Runner, name: str, node_id: int, ctx: Context, prop: Proposal, seed: int | None) -> Node:
    """Run ``prop`` (under ``seed`` unless ``None``) as experiment ``name``; the journal node it becomes."""
    started = _now()
    res = runner.run(name, prop.params) if seed is None else runner.run(name, prop.params, seed=seed)
    return _node(node_id, ctx, prop, seed, res, started, _now())


def _run_round(runner: Runner, plan: list[Planned]) -> list[Node]:
    """The round's nodes in node-id order, through ``runner.run_many`` where the runner has one (a block's root too:
    on a cluster it runs there), else one fit after another as in a serial study."""
    run_many = getattr(runner, "run_many", None)
    if run_many is None:
        return [_run_node(runner, p.name, p.node_id, p.ctx, p.prop, p.seed) for p in plan]
    started = _now()
    results = run_many([Job(p.name, p.prop.params, p.seed) for p in plan])
    finished = _now()
    return [
        _node(p.node_id, p.ctx, p.prop, p.seed, res, started, finished) for p, res in zip(plan, results, strict=True)
    ]


def _node(
    node_id: int, ctx: Context, prop: Proposal, seed: int | None, res: RunResult, started: str, finished: str
) -> Node:
    """The journal node of a finished fit."""
    return Node(
        id=node_id,
        parent=prop.parent,
        block=ctx.block,
        iteration=ctx.iteration,
        params=prop.params,
        metrics=res.metrics or {},
        status=OK if res.metrics is not None else FAILED,
        error=res.error,
        strategy=prop.strategy,
        mutation=prop.mutation,
        rationale=prop.rationale,
        observation=observe(res.metrics) if res.metrics is not None else "",
        ucb_c=ctx.ucb_c,
        started=started,
        finished=finished,
        exp_name=res.exp_name,
        commit=res.commit,
        seed=seed,
    )


def _plan_round(
    proposer: Agent, cfg: Config, study: Study, nodes: list[Node], block: int, iteration: int, size: int, log: Logger
) -> list[Planned]:
    """Propose iterations ``iteration .. iteration + size - 1`` of ``block``, each seeing the earlier ones as pending;
    write their ``configs/iter_NNN.yaml``."""
    cur = block_nodes(nodes, block)
    c = block_c(nodes, block, cfg.explore.ucb_c)
    plan: list[Planned] = []
    for i in range(iteration, iteration + size):
        ctx = Context(block, i, study.n_iter_block, c, cur, nodes, pending=tuple(p.prop for p in plan))
        prop = proposer.propose(ctx)
        node_id, name = len(nodes) + len(plan) + 1, f"b{block}-i{i}"
        _write_iteration_config(study.out, node_id, block, i, prop)
        log(f"[{name}] node {node_id} parent {prop.parent} {prop.strategy}: {prop.mutation or '-'}")
        seed = repeat_seed(prop, [*nodes, *(p.prop for p in plan)], cfg.seed)
        plan.append(Planned(prop, node_id, name, ctx, seed))
    return plan


def run_study(
    cfg: Config,
    study: Study,
    runner: Runner | None = None,
    log: Logger = print,
    proposer: Agent | None = None,
) -> list[Node]:
    """Run (or resume) a study; return every node of the journal.

    ``runner`` runs the fits (default: by ``explore.parallel``, ``--no-dvc`` and ``cluster.address``) and
    ``proposer`` proposes every iteration (default: the block roots, then the rule or command agent).
    """
    out = study.out
    journal = Journal(out / "journal.jsonl")
    nodes = journal.load()
    if nodes and not study.resume:
        raise ConfigError(f"{journal.path}: a study is already recorded there: pass --resume or choose another --out")
    baseline_text, baseline = _load_baseline(study)
    with contextlib.ExitStack() as stack:
        if runner is None:
            runner = _default_runner(cfg, study, baseline_text, baseline, stack)
        if proposer is None:
            proposer = _Proposer.create(cfg, study, baseline_text, baseline)
        done = {(n.block, n.iteration) for n in nodes}
        n_iter, k = study.n_iter_block, cfg.explore.parallel
        for b in range(1, study.n_blocks + 1):
            i = 1
            while i <= n_iter:
                if (b, i) in done:
                    i += 1
                    continue
                size = 1
                while block_nodes(nodes, b) and size < k and i + size <= n_iter and (b, i + size) not in done:
                    size += 1  # a root runs alone: later proposals need a node of the block as parent
                plan = _plan_round(proposer, cfg, study, nodes, b, i, size, log)
                for node in _run_round(runner, plan):
                    journal.append(node)
                    nodes.append(node)
                    how = f"R2={node.r2:.5f}" if node.r2 is not None else f"FAILED: {node.error[-200:]}"
                    log(f"[b{b}-i{node.iteration}] {how}")
                i += size
                render_outputs(nodes, cfg, out, n_iter, b, pictures=i > n_iter)
    if nodes:
        render_outputs(nodes, cfg, out, study.n_iter_block, max(n.block for n in nodes))
    return nodes
