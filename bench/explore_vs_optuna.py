"""Rule agent vs Optuna TPE vs random search on the same iteration budget (prints JSON).

Objective: a cheap, deterministic *synthetic* stand-in for an INR fit over the same parameter space and ranges as
``inr.*`` (no recorded table of real fits exists yet). Its error 1 - R2 is a product of factors with the shapes a
SIREN fit shows: a log-quadratic optimum in lr that moves with width, error falling with width and steps, an
optimum near omega 30 (ignored by ngp), optimal periods, a best depth, model quality siren_txy ~ ngp > siren_t >>
siren_id, plus config-seeded noise. Every method starts from the same baseline config and obeys the same time
budget: a config whose predicted time (rate * steps * batch * layers * width^2) exceeds it only trains for the
steps that fit, as the real loop's budget would cut it.

The rule agent runs through the real driver (:func:`fieldlab.explore.driver.run_study`) with an in-process runner;
TPE and random search through Optuna with the baseline enqueued as their first trial.

Run: ``flock /tmp/fieldlab-heavy.lock python bench/explore_vs_optuna.py --seeds 10 --iters 24``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml

from fieldlab.config import Config, ExploreConfig
from fieldlab.explore.driver import Study, run_study
from fieldlab.explore.runners import RunResult

BASELINE = {
    "model": "siren_txy", "field_name": "Jp", "n_training_frames": 48, "hidden_features": 256, "hidden_layers": 3,
    "omega": 30.0, "lr": 1.0e-4, "batch_size": 4, "total_steps": 1000, "t_period": 1.0, "xy_period": 1.0,
}  # fmt: skip
MODEL_ERR = {"siren_txy": 0.02, "ngp": 0.015, "siren_t": 0.08, "siren_id": 0.9}
RATE = 2e-10  # s per (step * batch * layer * width^2): 1000 steps of the baseline take 0.16 s
BUDGET_S = 60.0


def objective(p: dict[str, Any], seed: int) -> tuple[float, float]:
    """(R2, training_time) of config ``p`` under the synthetic model (see the module docstring)."""
    units = p["batch_size"] * p["hidden_layers"] * p["hidden_features"] ** 2
    steps = min(p["total_steps"], BUDGET_S / (RATE * units))
    width = p["hidden_features"] / 256
    lr_opt = 1e-4 / math.sqrt(width)
    err = MODEL_ERR[p["model"]]
    err *= 10 ** (0.8 * (math.log10(p["lr"] / lr_opt)) ** 2)
    err *= width**-0.6 * (1000 / steps) ** 0.7 * (4 / p["batch_size"]) ** 0.2
    err *= 1 + 0.15 * (p["hidden_layers"] - 4) ** 2
    if p["model"] != "ngp":
        err *= 10 ** ((p["omega"] - 30) ** 2 / 1500)
    err *= 10 ** (0.15 * math.log2(p["t_period"] / 2) ** 2 + 0.1 * math.log2(p["xy_period"]) ** 2)
    key = json.dumps(p, sort_keys=True) + str(seed)
    noise = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)).normal(0, 0.05)
    err *= math.exp(noise)
    return max(1 - err, -1.0), RATE * units * steps


class SyntheticRunner:
    """In-process runner for the driver: returns the synthetic metrics."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def run(self, name: str, inr: dict[str, Any]) -> RunResult:
        r2, t = objective(inr, self.seed)
        return RunResult({"final_r2": r2, "training_time": t, "slope": 1.0}, exp_name=name)


def run_rule(seed: int, iters: int, n_blocks: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        (ws / "params.yaml").write_text(yaml.safe_dump({"seed": seed, "inr": BASELINE}))
        cfg = Config(seed=seed, explore=ExploreConfig(time_budget_s=BUDGET_S, next_block="none"))
        study = Study(ws, ws / "out", n_blocks, iters // n_blocks, use_dvc=False)
        nodes = run_study(cfg, study, runner=SyntheticRunner(seed), log=lambda s: None)
    return [n.r2 if n.r2 is not None else -1.0 for n in nodes]


def run_optuna(seed: int, iters: int, sampler: optuna.samplers.BaseSampler) -> list[float]:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(BASELINE)

    def trial_fn(t: optuna.Trial) -> float:
        p = {
            "model": t.suggest_categorical("model", list(MODEL_ERR)),
            "field_name": "Jp",
            "n_training_frames": 48,
            "hidden_features": t.suggest_int("hidden_features", 64, 2048, log=True),
            "hidden_layers": t.suggest_int("hidden_layers", 2, 6),
            "omega": t.suggest_float("omega", 1.0, 100.0),
            "lr": t.suggest_float("lr", 1e-7, 1e-3, log=True),
            "batch_size": t.suggest_int("batch_size", 1, 32, log=True),
            "total_steps": t.suggest_int("total_steps", 1000, 200_000, log=True),
            "t_period": t.suggest_float("t_period", 0.01, 100.0, log=True),
            "xy_period": t.suggest_float("xy_period", 0.01, 100.0, log=True),
        }
        return objective(p, seed)[0]

    study.optimize(trial_fn, n_trials=iters)
    return [t.value for t in study.trials]


def best_so_far(values: list[float]) -> list[float]:
    return [float(x) for x in np.maximum.accumulate(values)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--iters", type=int, default=24)
    ap.add_argument("--blocks", type=int, default=3, help="rule agent: blocks (same regime, restart from the best)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    curves: dict[str, list[list[float]]] = {"rule": [], "tpe": [], "random": []}
    for s in range(args.seeds):
        curves["rule"].append(best_so_far(run_rule(s, args.iters, args.blocks)))
        curves["tpe"].append(best_so_far(run_optuna(s, args.iters, optuna.samplers.TPESampler(seed=s))))
        curves["random"].append(best_so_far(run_optuna(s, args.iters, optuna.samplers.RandomSampler(seed=s))))
    final = {k: [c[-1] for c in v] for k, v in curves.items()}
    median = {k: float(np.median(v)) for k, v in final.items()}
    err = {k: 1 - v for k, v in median.items()}
    print(json.dumps({
        "objective": "synthetic deterministic INR stand-in (no recorded table of real fits yet)",
        "iterations": args.iters, "seeds": args.seeds, "rule_blocks": args.blocks, "budget_s": BUDGET_S,
        "median_best_r2": median,
        "median_best_curve": {k: [float(x) for x in np.median(np.array(v), axis=0)] for k, v in curves.items()},
        "error_ratio_tpe_over_rule": err["tpe"] / err["rule"],
        "error_ratio_random_over_rule": err["random"] / err["rule"],
        "rule_wins_per_seed_vs_tpe": int(sum(a > b for a, b in zip(final["rule"], final["tpe"], strict=True))),
        "target_met": median["rule"] >= median["tpe"] and median["rule"] > median["random"],
        "final_best_per_seed": final,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
