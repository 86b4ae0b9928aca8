"""Rule agent vs Optuna TPE vs random search on the same iteration and per-fit budget (prints JSON).

Two objectives:

``--objective real`` (the comparison that counts)
    every trial is a real INR fit (``bench/inr_fits.py``: the stage's fit and scores, in process, CPU) of the
    ``inr`` section of ``--params`` on one MPM field, scored by the stage's R2. The space is the one the rule agent
    mutates: the model (``inr.model``), then that model's keys (:func:`fieldlab.explore.keys.mutable_keys`:
    ``ngp.*`` for ngp, widths and omega for the SIREN variants) within ``explore.ranges`` (``total_steps`` from
    ``--min-steps``). Every method obeys the same per-fit budget (:class:`Budgeted`); the first trial of every
    method is the baseline config with ``--baseline-steps`` steps. Every fit is written to ``--trials`` (JSON lines)
    for the landscape report.
``--objective synthetic``
    a cheap, deterministic stand-in over the SIREN/ngp space (error = product of factors with a SIREN fit's shapes:
    a log-quadratic optimum in lr that moves with width, error falling with width and steps, an omega optimum near
    30, optimal periods and depth, config-seeded noise); useful to test the agents in seconds, not evidence.

The rule agent runs through the real driver (:func:`fieldlab.explore.driver.run_study`, ``next_block=none``: a new
block restarts from the best config) with an in-process runner; TPE and random search through Optuna with the
baseline enqueued as their first trial. Reported: median best R2 over seeds, median iterations to reach R2 >= 0.995
(``null`` where fewer than half of the seeds reach it), and wall time per method.

Run (about an hour on 2 cores)::

    python bench/explore_vs_optuna.py --objective real --field F --seeds 3 --iters 16 --budget-s 20 \\
        --baseline-steps 170 --trials docs/landscape/agents_f_fill_trials.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from inr_fits import InProcessFits  # bench/inr_fits.py

from fieldlab.config import Config, ExploreConfig, load_config, to_dict
from fieldlab.explore.cost import cost_units, fitted_steps, machine_rate
from fieldlab.explore.driver import Study, run_study
from fieldlab.explore.keys import MODELS, get_value, model_of, mutable_keys, with_value
from fieldlab.explore.mutations import INT_KEYS, bounds
from fieldlab.explore.runners import RunResult

TARGET_R2 = 0.995
Objective = Callable[..., dict[str, Any]]  # (inr params[, seed]) -> metrics

# ---- synthetic objective ------------------------------------------------------------------------------------------
SYN_BASELINE = {
    "model": "siren_txy", "field_name": "Jp", "n_training_frames": 48, "hidden_features": 256, "hidden_layers": 3,
    "omega": 30.0, "lr": 1.0e-4, "batch_size": 4, "total_steps": 1000, "t_period": 1.0, "xy_period": 1.0,
}  # fmt: skip
MODEL_ERR = {"siren_txy": 0.02, "ngp": 0.015, "siren_t": 0.08, "siren_id": 0.9}
RATE = 2e-10  # s per (step * batch * layer * width^2): 1000 steps of the baseline take 0.16 s
SYN_BUDGET_S = 60.0


def synthetic(p: dict[str, Any], seed: int) -> dict[str, Any]:
    """Metrics of config ``p`` under the synthetic model (see the module docstring)."""
    units = p["batch_size"] * p["hidden_layers"] * p["hidden_features"] ** 2
    steps = min(p["total_steps"], SYN_BUDGET_S / (RATE * units))
    width = p["hidden_features"] / 256
    err = MODEL_ERR[p["model"]] * 10 ** (0.8 * (math.log10(p["lr"] * math.sqrt(width) / 1e-4)) ** 2)
    err *= width**-0.6 * (1000 / steps) ** 0.7 * (4 / p["batch_size"]) ** 0.2
    err *= 1 + 0.15 * (p["hidden_layers"] - 4) ** 2
    if p["model"] != "ngp":
        err *= 10 ** ((p["omega"] - 30) ** 2 / 1500)
    err *= 10 ** (0.15 * math.log2(p["t_period"] / 2) ** 2 + 0.1 * math.log2(p["xy_period"]) ** 2)
    key = json.dumps(p, sort_keys=True) + str(seed)
    noise = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)).normal(0, 0.05)
    err *= math.exp(noise)
    return {"final_r2": max(1 - err, -1.0), "training_time": RATE * units * steps, "slope": 1.0}


# ---- search space and budget ----------------------------------------------------------------------------------
def space_of(params: dict[str, Any], fill_budget: bool = False) -> list[str]:
    """The keys a method may set for ``params``' model: the rule agent's mutable keys (the model chosen first);
    not ``total_steps`` when the budget decides it (``fill_budget``)."""
    fixed = ("model", "total_steps") if fill_budget else ("model",)
    return [k for k in mutable_keys(params) if k not in fixed]


def suggest(trial: optuna.Trial, baseline: dict[str, Any], cfg: ExploreConfig) -> dict[str, Any]:
    """A config drawn by ``trial``: the model, then its keys within ``cfg.ranges`` (log scale for wide ranges)."""
    p = {**baseline, "model": trial.suggest_categorical("model", list(MODELS))}
    for key in space_of(p, cfg.fill_budget):
        low, high = bounds(key, cfg.ranges)
        log = low > 0 and high / low >= 8
        if key in INT_KEYS:
            value: Any = trial.suggest_int(key, int(low), int(high), log=log)
        else:
            value = trial.suggest_float(key, float(low), float(high), log=log)
        p = with_value(p, key, value)
    return p


class Budgeted:
    """The objective under the per-fit budget, the same for every method.

    Before each fit ``total_steps`` is set by :func:`fieldlab.explore.cost.fitted_steps` from this method's
    earlier fits, the loop's own rule: filled to the budget with ``explore.fill_budget`` (then no method searches
    ``total_steps``), else only capped (the rule agent's proposals arrive already set by it). A config whose
    predicted time at the smallest allowed step count still exceeds ``OVER`` budgets is not run: a failed trial.
    """

    OVER = 3.0

    def __init__(self, objective: Objective, cfg: ExploreConfig) -> None:
        self.objective, self.cfg = objective, cfg
        self.history: list[tuple[dict, float]] = []

    def __call__(self, params: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
        steps = fitted_steps(params, self.history, self.cfg.time_budget_s, self.cfg.ranges, self.cfg.fill_budget)
        if steps is not None:
            params = {**params, "total_steps": steps}
        rate = machine_rate(self.history)
        if steps is not None and rate is not None:
            predicted = rate * params["total_steps"] * cost_units(params)
            if predicted > self.OVER * self.cfg.time_budget_s:
                return {"final_r2": None, "error": f"predicted {predicted:.0f} s > {self.OVER:g} budgets: not run"}
        m = self.objective(params) if seed is None else self.objective(params, seed)
        if m.get("final_r2") is not None and m.get("training_time"):
            self.history.append((params, float(m["training_time"])))
        return m


class Runner:
    """The driver's runner: the objective on the proposed ``inr`` params."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective

    def run(self, name: str, inr: dict[str, Any], seed: int | None = None) -> RunResult:
        m = self.objective(inr) if seed is None else self.objective(inr, seed)  # a robustness repeat: another seed
        ok = m.get("final_r2") is not None and math.isfinite(m["final_r2"])
        return RunResult(m if ok else None, m.get("error", "failed"), exp_name=name)


def run_rule(objective: Objective, baseline: dict, cfg: ExploreConfig, seed: int, iters: int, blocks: int) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp)
        (ws / "params.yaml").write_text(yaml.safe_dump({"seed": seed, "inr": baseline}))
        conf = Config(seed=seed, explore=dataclasses.replace(cfg, next_block="none"))
        study = Study(ws, ws / "out", blocks, iters // blocks, use_dvc=False)
        nodes = run_study(conf, study, runner=Runner(Budgeted(objective, cfg)), log=lambda s: None)
    return [n.r2 if n.r2 is not None else -1.0 for n in nodes]


def run_optuna(objective: Objective, baseline: dict, cfg: ExploreConfig, iters: int, sampler: Any) -> list[float]:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    first = {k: get_value(baseline, k) for m in MODELS for k in space_of({**baseline, "model": m}, cfg.fill_budget)}
    study.enqueue_trial({"model": model_of(baseline), **first})
    budgeted = Budgeted(objective, cfg)

    def trial_fn(t: optuna.Trial) -> float:
        m = budgeted(suggest(t, baseline, cfg))
        return -1.0 if m.get("final_r2") is None else float(m["final_r2"])

    study.optimize(trial_fn, n_trials=iters)
    return [t.value for t in study.trials]


def first_reach(values: list[float], target: float = TARGET_R2) -> int | None:
    """1-based iteration at which ``values`` first reaches ``target`` (``None``: never)."""
    return next((i + 1 for i, v in enumerate(values) if v >= target), None)


def median_reach(reach: list[int | None]) -> float | None:
    """Median iterations to the target, ``None`` unless at least half of the seeds reach it (misses count as inf)."""
    vals = sorted(math.inf if r is None else r for r in reach)
    med = float(np.median(vals))
    return None if math.isinf(med) or math.isnan(med) else med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objective", choices=("real", "synthetic"), default="synthetic")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=16)
    ap.add_argument("--blocks", type=int, default=2, help="rule agent: blocks (same regime, restart from the best)")
    ap.add_argument("--params", default="params.yaml", help="real: the baseline inr section and explore.ranges")
    ap.add_argument("--field", default=None, help="real: inr.field_name (default: the params file's)")
    ap.add_argument("--budget-s", type=float, default=15.0, help="real: per-fit time budget (seconds)")
    ap.add_argument("--baseline-steps", type=int, default=150, help="real: total_steps of the baseline trial")
    ap.add_argument("--min-steps", type=int, default=10, help="real: lower end of the total_steps range")
    ap.add_argument("--trials", type=Path, default=None, help="real: append every fit here (JSON lines)")
    ap.add_argument(
        "--cap-only", action="store_true", help="cap total_steps to the budget instead of filling it (all methods)"
    )
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if args.objective == "real":
        base = load_config(args.params)
        ranges = dataclasses.replace(
            base.explore.ranges, total_steps=(args.min_steps, base.explore.ranges.total_steps[1])
        )
        ex = dataclasses.replace(base.explore, time_budget_s=args.budget_s, ranges=ranges)
        baseline = {k: v for k, v in to_dict(base.inr).items() if k not in ("device", "data_root", "scene")}
        baseline.update(total_steps=args.baseline_steps, field_name=args.field or base.inr.field_name)
        fits = InProcessFits(base, args.trials)
    else:
        ex = ExploreConfig(time_budget_s=SYN_BUDGET_S)
        baseline, fits = SYN_BASELINE, None
    ex = dataclasses.replace(ex, fill_budget=ex.fill_budget and not args.cap_only)

    curves: dict[str, list[list[float]]] = {"rule": [], "tpe": [], "random": []}
    wall: dict[str, float] = dict.fromkeys(curves, 0.0)
    for s in range(args.seeds):
        for method in curves:
            if fits is not None:
                objective: Objective = fits.with_seed(s, f"{method}/seed{s}")
            else:
                objective = lambda p, k=None, s=s: synthetic(p, s if k is None else k)  # noqa: E731
            start = time.perf_counter()
            if method == "rule":
                values = run_rule(objective, baseline, ex, s, args.iters, args.blocks)
            else:
                sampler = (
                    optuna.samplers.TPESampler(seed=s) if method == "tpe" else optuna.samplers.RandomSampler(seed=s)
                )
                values = run_optuna(objective, baseline, ex, args.iters, sampler)
            wall[method] += time.perf_counter() - start
            curves[method].append(values)

    best = {k: [float(np.max(c)) for c in v] for k, v in curves.items()}
    median = {k: float(np.median(v)) for k, v in best.items()}
    reach = {k: [first_reach(c) for c in v] for k, v in curves.items()}
    med_reach = {k: median_reach(v) for k, v in reach.items()}
    rule_reach, tpe_reach = med_reach["rule"], med_reach["tpe"]
    print(json.dumps({
        "objective": args.objective,
        "field": baseline["field_name"], "model": baseline.get("model"), "budget_s": ex.time_budget_s,
        "fill_budget": ex.fill_budget,
        "iterations": args.iters, "seeds": args.seeds, "rule_blocks": args.blocks,
        "median_best_r2": median,
        "median_iterations_to_r2_0995": med_reach,
        "iterations_to_r2_0995_per_seed": reach,
        "wall_s": wall,
        "median_best_curve": {k: [float(x) for x in np.median(np.maximum.accumulate(np.array(v), axis=1), axis=0)]
                              for k, v in curves.items()},
        "best_r2_per_seed": best,
        "target_met": median["rule"] >= median["tpe"]
        and (tpe_reach is None or (rule_reach is not None and rule_reach <= tpe_reach)),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
