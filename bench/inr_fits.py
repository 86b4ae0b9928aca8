"""In-process INR fits for the benchmarks: one params file's ``inr`` section with overrides, fitted on the CPU.

Shared by ``explore_vs_optuna.py --objective real``, ``inr_sizes.py`` and ``siren_steps.py`` (run from the repository
root so ``data/mpm`` resolves). Each fit is :func:`fieldlab.inr.represent.fit_representation` (an INR, ``pod`` or
``pod_residual``) + :func:`~fieldlab.inr.fit.fit_metrics` and, with ``inr.heldout_every`` or
``inr.heldout_particles``, the held-out scores (:mod:`fieldlab.inr.heldout`): the same code and scores as the
``inr_block`` stage, without writing the stage's outputs; the field window is loaded once per (field, frames).
With ``trials`` set, every fit is appended there as one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from fieldlab.config import Config, config_from_dict, to_dict
from fieldlab.core.device import select_device
from fieldlab.errors import FieldlabError
from fieldlab.inr.data import FieldWindow, load_field_window
from fieldlab.inr.fit import fit_metrics, json_safe
from fieldlab.inr.heldout import heldout_scores, split_window
from fieldlab.inr.represent import fit_representation


class InProcessFits:
    """Callable: ``inr`` overrides (nested ``ngp`` merged)[, seed] -> the stage's metrics plus ``wall_s``.

    A fit that raises a fieldlab error (diverged) or a RuntimeError (out of memory) returns ``final_r2 = None`` and
    the ``error`` text, as the stage's failure makes a failed node in the loop.
    """

    def __init__(self, base: Config, trials: Path | None = None, tag: str = "") -> None:
        self.base = base
        self.device = select_device("cpu")
        self.windows: dict[tuple[str, int], FieldWindow] = {}
        self.trials = trials
        self.tag = tag

    def with_seed(self, seed: int, tag: str) -> InProcessFits:
        """The same fits (window cache shared) under another seed and tag."""
        out = dataclasses.replace(self.base, seed=seed)
        other = InProcessFits(out, self.trials, tag)
        other.windows = self.windows
        return other

    def config(self, params: dict[str, Any]) -> Config:
        raw = to_dict(self.base)
        inr = raw["inr"]
        raw["inr"] = {**inr, **params, "ngp": {**inr["ngp"], **params.get("ngp", {})},
                      "pod": {**inr["pod"], **params.get("pod", {})}, "device": "cpu"}  # fmt: skip
        return config_from_dict(raw)

    def window(self, field_name: str, frames: int) -> FieldWindow:
        key = (field_name, frames)
        if key not in self.windows:
            cfg = self.base.inr
            path = Path(cfg.data_root) / cfg.scene / "trajectory.npz"
            self.windows[key] = load_field_window(path, field_name, cfg.frame_start, frames)
        return self.windows[key]

    def __call__(self, params: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
        if seed is not None and seed != self.base.seed:
            return self.with_seed(seed, self.tag)(params)
        cfg = self.config(params).inr
        full = self.window(cfg.field_name, cfg.n_training_frames)
        start = time.perf_counter()
        try:
            window, split = split_window(cfg, full)
            result = fit_representation(cfg, window, self.base.seed, self.device)
            metrics = fit_metrics(cfg, window, result)
            if split.active:
                held = heldout_scores(cfg, result, full, split, self.device)
                metrics |= {k: json_safe(v) if isinstance(v, float | list) else v for k, v in held.items()}
        except (FieldlabError, RuntimeError) as exc:  # diverged, out of memory: a failed node in the loop too
            metrics = {"final_r2": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        metrics["wall_s"] = time.perf_counter() - start
        if self.trials is not None:
            with self.trials.open("a") as fh:
                fh.write(json.dumps({"tag": self.tag, "seed": self.base.seed, "inr": to_dict(cfg), "metrics": metrics}))
                fh.write("\n")
        return metrics
