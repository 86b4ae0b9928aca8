"""Seconds per training step of the INR models over their settings, and the cost law fitted to them (prints JSON).

Each step is one step of :func:`fieldlab.inr.fit.fit_inr`: ``batch_size`` random frames of a synthetic window
(:func:`fieldlab.inr.data.synthetic_trajectory`, ``--particles`` particles, 48 frames), forward, MSE, backward,
Adam. Each step is timed in CPU seconds of the process (``time.process_time``, user + system) on one thread
(``--threads``): on a machine shared with other jobs, wall time varied 2x from step to step, CPU time much less.
Configs are timed in interleaved rounds (after one warm-up step each); the fastest step per config is kept
(other jobs only ever add time). The law
``t = sum_k c_k * work_k`` over the terms of
:class:`fieldlab.explore.cost.StepWork` is fitted by non-negative least squares of the relative error; the JSON
holds every row (settings, seconds, prediction of the fitted law and of the law in ``fieldlab.explore.cost``).

    flock /tmp/fieldlab-heavy.lock python bench/inr_cost.py [--particles 9000] [--rounds 3] [--steps 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import nnls

from fieldlab.config import INRConfig, NGPConfig
from fieldlab.explore.cost import COEFFS, cost_units, step_work
from fieldlab.inr.data import FieldWindow, field_components, synthetic_trajectory
from fieldlab.inr.models.registry import build_inr, make_inputs

NGP = {"model": "ngp", "batch_size": 2}
SIREN = {"model": "siren_txy", "batch_size": 2, "hidden_features": 256, "hidden_layers": 3}
#: one-key variations around the ngp default (16 x 2, T = 2^15, base 16, growth 1.5, MLP 64 x 2) and SIREN 256 x 3
CONFIGS: list[dict] = [
    NGP,
    *({**NGP, "ngp": {"levels": v}} for v in (8, 24)),
    *({**NGP, "ngp": {"features": v}} for v in (1, 4, 8)),
    *({**NGP, "ngp": {"log2_table_size": v}} for v in (12, 17, 19, 21)),
    *({**NGP, "ngp": {"base_resolution": v}} for v in (4, 64)),
    *({**NGP, "ngp": {"growth": v}} for v in (1.2, 2.0)),
    *({**NGP, "ngp": {"mlp_width": v}} for v in (32, 128, 256)),
    *({**NGP, "ngp": {"mlp_layers": v}} for v in (1, 4)),
    *({**NGP, "batch_size": v} for v in (1, 4)),
    {**NGP, "field_name": "F"},
    {**NGP, "t_period": 0.25, "xy_period": 0.25},
    SIREN,
    *({**SIREN, "hidden_features": v} for v in (64, 128, 512)),
    *({**SIREN, "hidden_layers": v} for v in (2, 5)),
    *({**SIREN, "batch_size": v} for v in (1, 4)),
    {**SIREN, "model": "siren_id"},
    {**SIREN, "model": "siren_t", "hidden_features": 64},
    {**SIREN, "model": "siren_t"},
    {**SIREN, "model": "siren_t", "field_name": "F"},
    dict(NGP),  # the first config again, timed last in every round: the spread of the two is the noise
]


def inr_config(params: dict) -> INRConfig:
    """INRConfig of the defaults with ``params`` (an ``inr`` section, ``ngp`` nested) on top."""
    top = {k: v for k, v in params.items() if k != "ngp"}
    return dataclasses.replace(INRConfig(), **top, ngp=dataclasses.replace(NGPConfig(), **params.get("ngp", {})))


class Stepper:
    """One config with its model, Adam and inputs; :meth:`step` returns the seconds of one training step."""

    def __init__(self, params: dict, arrays: dict, n_frames: int, seed: int = 0) -> None:
        cfg = inr_config(params)
        values = field_components(cfg.field_name, arrays)  # (T, N, C)
        frames = np.arange(n_frames)
        window = FieldWindow(cfg.field_name, values, arrays["x"], frames, arrays["material"])
        self.model = build_inr(cfg, window.n_particles, window.n_components)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.inputs = make_inputs(cfg, window)
        self.targets = torch.as_tensor(values, dtype=torch.float32)
        self.batch, self.gen = cfg.batch_size, torch.Generator().manual_seed(seed)

    def step(self) -> float:
        start = time.process_time()
        idx = torch.randperm(self.inputs.shape[0], generator=self.gen)[: self.batch]
        loss = torch.nn.functional.mse_loss(self.model(self.inputs[idx]), self.targets[idx])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return time.process_time() - start


def time_configs(args: argparse.Namespace) -> list[dict]:
    """Fastest and median seconds per step of every config of :data:`CONFIGS`, timed in interleaved rounds."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    arrays = synthetic_trajectory(args.frames, args.particles, seed=0)
    steppers = []
    for params in CONFIGS:
        s = Stepper(params, arrays, args.frames)
        s.step()  # warm-up
        steppers.append(s)
    times: list[list[float]] = [[] for _ in CONFIGS]
    for _ in range(args.rounds):
        for i, s in enumerate(steppers):
            times[i] += [s.step() for _ in range(args.steps)]
    rows = zip(CONFIGS, times, strict=True)
    return [{"params": p, "seconds": min(t), "median": statistics.median(t)} for p, t in rows]


def fit_law(rows: list[dict], n_particles: int) -> np.ndarray:
    """Non-negative coefficients minimising sum_j ((sum_k c_k w_jk - t_j) / t_j)^2."""
    work = np.array([dataclasses.astuple(step_work(r["params"], n_particles)) for r in rows])  # (configs, terms)
    t = np.array([r["seconds"] for r in rows])
    scale = work.max(0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(work / scale / t[:, None], np.ones_like(t))
    return coef / scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--particles", type=int, default=9000)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per config and round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", help="refit the rows of an earlier run's JSON instead of timing")
    args = parser.parse_args()
    if args.rows:
        earlier = json.loads(Path(args.rows).read_text())["rows"]
        rows = [{k: r[k] for k in ("params", "seconds", "median")} for r in earlier]
    else:
        rows = time_configs(args)
    coef = fit_law(rows, args.particles)
    names = [f.name for f in dataclasses.fields(COEFFS)]
    for r in rows:
        work = np.array(dataclasses.astuple(step_work(r["params"], args.particles)))
        r["fitted"] = float(work @ coef)
        r["recorded"] = cost_units(r["params"], args.particles)
    err_fit = [abs(r["fitted"] / r["seconds"] - 1) for r in rows]
    err_rec = [abs(r["recorded"] / r["seconds"] - 1) for r in rows]
    result = {
        "threads": args.threads,
        "particles": args.particles,
        "coefficients": dict(zip(names, map(float, coef), strict=True)),
        "fitted_rel_error_median_max": [statistics.median(err_fit), max(err_fit)],
        "recorded_rel_error_median_max": [statistics.median(err_rec), max(err_rec)],
        "rows": rows,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
