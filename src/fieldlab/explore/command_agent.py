"""The external command agent: a user command (e.g. an LLM CLI) edits params.yaml; the guard validates the edit.

The prompt (the instructions template, the memory file, the last metrics, ``ucb_scores.txt`` and the block info)
goes to the command's stdin; it runs in the workspace with ``params.yaml`` holding the parent's ``inr`` config.
Optional ``PARENT:``, ``STRATEGY:`` and ``RATIONALE:`` lines on its stdout are recorded.
"""

from __future__ import annotations

import json
import re
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fieldlab.config import ExploreConfig, to_dict
from fieldlab.errors import ConfigError
from fieldlab.explore import guard
from fieldlab.explore.agents import Context, Proposal
from fieldlab.explore.keys import MUTABLE, flatten
from fieldlab.explore.ucb import ucb_scores


def instructions(cfg: ExploreConfig) -> str:
    """The shipped instructions with the ranges, the keys of each model, editable files and budget filled in."""
    text = resources.files("fieldlab.explore").joinpath("templates/agent_instructions.md").read_text()
    ranges = ", ".join(f"{k} {v[0]:g}..{v[1]:g}" for k, v in flatten(to_dict(cfg.ranges)).items())
    keys = "\n".join(f"  - {model}: {', '.join(names)}" for model, names in MUTABLE.items())
    return text.format(
        ranges=ranges,
        model_keys=keys,
        may_edit=", ".join(cfg.agent_may_edit) or "none",
        time_budget_s=f"{cfg.time_budget_s:g}",
        steps_rule="The loop sets `total_steps` to fill the budget: a cheaper step buys more steps."
        if cfg.fill_budget
        else "The loop caps `total_steps` to the budget.",
    )


def render_prompt(cfg: ExploreConfig, ctx: Context, memory: str, scores: str) -> str:
    """Instructions, memory, last metrics, UCB scores and block info, in that order."""
    last = ctx.nodes[-1] if ctx.nodes else None
    last_metrics = json.dumps(last.metrics if last else {}, indent=1, default=str)
    parts = [
        instructions(cfg),
        "# Memory\n\n" + memory,
        f"# Last result (node {last.id if last else '-'}, status {last.status if last else '-'})\n\n{last_metrics}",
        "# ucb_scores.txt\n\n" + (scores or "(empty)"),
        f"# Block\n\nblock {ctx.block}, iteration {ctx.iteration} of {ctx.n_iter_block}, ucb_c {ctx.ucb_c:.3g}",
    ]
    if ctx.pending:  # explore.parallel > 1: proposals of this round that run together with this one
        lines = [f"- parent {p.parent}: {p.strategy}: {p.mutation or '-'}" for p in ctx.pending]
        parts.append("# Already proposed in this round (not run yet; propose something else)\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def _tag(text: str, name: str) -> str | None:
    m = re.search(rf"^\s*{name}:\s*(.+?)\s*$", text, flags=re.MULTILINE | re.IGNORECASE)
    return m.group(1) if m else None


class CommandAgent:
    """Runs ``explore.agent_command``; returns the guarded params as the next proposal."""

    def __init__(
        self, cfg: ExploreConfig, workspace: str | Path, params_file: str = "params.yaml", skip: tuple[str, ...] = ()
    ) -> None:
        if not cfg.agent_command.strip():
            raise ConfigError("explore.agent_command = '': expected a command when explore.agent is 'command'")
        self.cfg = cfg
        self.workspace = Path(workspace)
        self.params_file = params_file
        self.skip = skip
        self.last_report: guard.GuardReport | None = None

    def propose(self, ctx: Context, baseline: dict[str, Any], memory: str, scores: str) -> Proposal:
        ok = ucb_scores(ctx.nodes, ctx.ucb_c, ctx.pending_parents)
        by_id = {n.id: n for n in ctx.nodes}
        parent = by_id[ok[0].node] if ok else ctx.nodes[-1]
        params_path = self.workspace / self.params_file
        start = dict(baseline)
        start["inr"] = dict(parent.params)
        params_path.write_text(yaml.safe_dump(start, sort_keys=False))
        snap = guard.snapshot(self.workspace, self.params_file, self.skip)
        prompt = render_prompt(self.cfg, ctx, memory, scores)
        try:
            proc = subprocess.run(
                self.cfg.agent_command,
                shell=True,
                input=prompt,
                text=True,
                capture_output=True,
                cwd=self.workspace,
                timeout=self.cfg.agent_timeout_s,
                check=False,
            )
            out, note = proc.stdout, "" if proc.returncode == 0 else f"agent exited with {proc.returncode}; "
        except subprocess.TimeoutExpired:
            out, note = "", f"agent timed out after {self.cfg.agent_timeout_s:g} s; "
        report = guard.validate(snap, self.cfg.ranges, self.cfg.agent_may_edit, self.params_file)
        self.last_report = report
        claimed = _tag(out, "PARENT")
        parent_id = int(claimed) if claimed and claimed.isdigit() and int(claimed) in by_id else parent.id
        new, old = flatten(report.params), flatten(parent.params)
        mutation = "; ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items() if v != old.get(k)) or "none"
        reverts = (" Reverted: " + " | ".join(report.reverted)) if report.reverted else ""
        return Proposal(
            parent_id,
            report.params,
            _tag(out, "STRATEGY") or "agent",
            mutation,
            note + (_tag(out, "RATIONALE") or "no rationale given") + reverts,
        )
