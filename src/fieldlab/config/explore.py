"""Schema of the ``explore`` section: the UCB exploration loop over INR configurations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from fieldlab.config.core import spec


# ---- explore: the UCB exploration loop --------------------------------------------------------------------------
@dataclass(frozen=True)
class ExploreNGPRanges:
    """Allowed ranges of the ``inr.ngp.*`` values the agents may set (inclusive bounds)."""

    levels: tuple[int, int] = spec((4, 24), ge=1, le=32)
    features: tuple[int, int] = spec((1, 8), ge=1, le=16)
    log2_table_size: tuple[int, int] = spec((10, 22), ge=4, le=26, doc="2^22 rows x 16 levels x 2: 134M values")
    base_resolution: tuple[int, int] = spec((2, 64), ge=1)
    growth: tuple[float, float] = spec((1.1, 2.0), ge=1.0, le=4.0)
    mlp_width: tuple[int, int] = spec((16, 256), ge=1)
    mlp_layers: tuple[int, int] = spec((1, 4), ge=1, le=16)


@dataclass(frozen=True)
class ExplorePODRanges:
    """Allowed ranges of the ``inr.pod.*`` values the agents may set (inclusive bounds)."""

    rank: tuple[int, int] = spec((1, 96), ge=1, le=4096)


@dataclass(frozen=True)
class ExploreRanges:
    """Allowed ranges of the ``inr.*`` values the agents may set (inclusive bounds)."""

    lr: tuple[float, float] = spec((1e-7, 1e-3), gt=0)
    batch_size: tuple[int, int] = spec((1, 32), ge=1)
    hidden_features: tuple[int, int] = spec((64, 2048), ge=1)
    hidden_layers: tuple[int, int] = spec((2, 6), ge=1)
    omega: tuple[float, float] = spec((1.0, 100.0), gt=0)
    total_steps: tuple[int, int] = spec((1000, 200000), ge=1, doc="a tiny study lowers this range")
    t_period: tuple[float, float] = spec((0.01, 100.0), gt=0)
    xy_period: tuple[float, float] = spec((0.01, 100.0), gt=0)
    n_training_frames: tuple[int, int] = spec((2, 100000), ge=1)
    ngp: ExploreNGPRanges = field(default_factory=ExploreNGPRanges)
    pod: ExplorePODRanges = field(default_factory=ExplorePODRanges)


@dataclass(frozen=True)
class ExploreConfig:
    """Blocks, iterations, UCB constant, agent, time budget and mutation ranges of the exploration loop."""

    ucb_c: float = spec(1.414, ge=0, doc="UCB = R2 + c sqrt(ln N / n)")
    agent: Literal["rule", "command"] = "rule"
    agent_command: str = spec("", doc="shell command of the command agent; prompt on stdin, run in the workspace")
    agent_timeout_s: float = spec(900.0, gt=0)
    agent_may_edit: tuple[str, ...] = spec((), doc="source files the command agent may edit (empty: none)")
    time_budget_s: float = spec(600.0, gt=0, doc="wall time allowed per fit; total_steps is scaled to fit it")
    fill_budget: bool = spec(True, doc="every fit runs the steps that fill time_budget_s (false: only capped)")
    n_blocks: int = spec(2, ge=1)
    n_iter_block: int = spec(8, ge=1)
    parallel: int = spec(1, ge=1, doc="fits proposed and run at once per round (1: one after another)")
    next_block: Literal["field", "frames", "none"] = spec("field", doc="rotate Jp->F->S->C, raise frames, or keep")
    frames_schedule: tuple[int, ...] = spec((48, 100, 200, 500), ge=1)
    stage: str = spec("inr_block", doc="DVC stage run by `dvc exp run`")
    stage_cmd: str = spec("python stages/inr_block.py", doc="command of the stage for --no-dvc (gets --params)")
    metrics_file: str = "metrics/inr.json"
    name: str = spec("inr", doc="prefix of <name>_analysis.md and <name>_memory.md")
    ranges: ExploreRanges = field(default_factory=ExploreRanges)
