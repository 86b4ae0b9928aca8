"""SIREN on the CPU: R2 of ``siren_txy`` against training steps on Jp and F, and the budget 0.995 would need.

Each point is a full fit of its own (the cosine schedule runs to its last step) with the settings the study this
project follows reports as best on a GPU (Jp: 384 x 3, omega 20, lr 4e-5; F: 256 x 4, omega 20, lr 3e-5; 48 frames,
2 frames per step), through ``bench/inr_fits.py`` (the stage's fit and scores). A power law 1 - R2 = a steps^-b,
through the last two points of each field (once 1 - R2 < 0.5), estimates the steps (and CPU hours at the measured
seconds per step) that R2 = 0.995 would take. Prints JSON; ``--figure`` draws 1 - R2 against steps (log-log).

Run (about 10 min on 2 cores; ``--points FILE`` redraws from a saved run)::

    python bench/siren_steps.py --steps 100 400 1600 --figure docs/landscape/siren_steps.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from inr_fits import InProcessFits  # bench/inr_fits.py

from fieldlab.config import load_config

TARGET_R2 = 0.995
TAIL = 0.5  # 1 - R2 below which the decay is taken as a power law of the steps
SETTINGS = {
    "Jp": {"hidden_features": 384, "hidden_layers": 3, "omega": 20.0, "lr": 4e-5},
    "F": {"hidden_features": 256, "hidden_layers": 4, "omega": 20.0, "lr": 3e-5},
}


def power_law(steps: list[int], r2: list[float]) -> dict[str, Any] | None:
    """1 - R2 = a steps^-b through the last two points, and the steps to the target.

    Only the tail is used, and only once 1 - R2 < ``TAIL``: far from the target 1 - R2 saturates near 1 and a fit
    through the early points predicts nonsense. ``None`` when the points are not in that regime yet.
    """
    pts = [(s, 1 - r) for s, r in zip(steps, r2, strict=True) if 0 < 1 - r < 1][-2:]
    if len(pts) < 2 or pts[-1][1] >= TAIL:
        return None
    x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
    slope, icpt = np.polyfit(x, y, 1)
    b = -float(slope)
    need = math.exp((icpt - math.log(1 - TARGET_R2)) / b) if b > 0 else math.inf
    return {"a": float(math.exp(icpt)), "b": b, "steps_to_target": need}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--fields", nargs="+", default=["Jp", "F"])
    ap.add_argument("--steps", nargs="+", type=int, default=[100, 300, 1000, 3000])
    ap.add_argument("--trials", type=Path, default=None, help="append every fit here (JSON lines)")
    ap.add_argument("--figure", type=Path, default=None)
    ap.add_argument("--points", type=Path, default=None, help="re-derive law and figure from an earlier run's JSON")
    args = ap.parse_args()
    earlier = json.loads(args.points.read_text())["fields"] if args.points else {}
    fits = None if args.points else InProcessFits(load_config(args.params), args.trials, tag="siren_steps")
    out: dict[str, Any] = {}
    for field in earlier or args.fields:
        rows = earlier[field]["points"] if earlier else []
        for steps in [] if earlier else args.steps:
            params = {"model": "siren_txy", "field_name": field, "n_training_frames": 48, "batch_size": 2,
                      "total_steps": steps, **SETTINGS[field]}  # fmt: skip
            m = fits(params)
            rows.append({"steps": steps, **{k: m.get(k) for k in ("final_r2", "slope", "training_time", "wall_s")}})
        ok = [r for r in rows if r["final_r2"] is not None]
        law = power_law([r["steps"] for r in ok], [r["final_r2"] for r in ok])
        sec = float(np.median([r["training_time"] / r["steps"] for r in ok])) if ok else None
        if law is not None and sec is not None:
            law["cpu_hours_to_target"] = law["steps_to_target"] * sec / 3600
        out[field] = {"settings": SETTINGS[field], "seconds_per_step": sec, "points": rows, "power_law": law}
    print(json.dumps({"model": "siren_txy", "target_r2": TARGET_R2, "fields": out}, indent=1))
    if args.figure is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
        for field, res in out.items():
            pts = [(r["steps"], 1 - r["final_r2"]) for r in res["points"] if r["final_r2"] is not None]
            ax.loglog(*zip(*pts, strict=True), "o-", label=f"{field}: {res['settings']['hidden_features']} x "
                      f"{res['settings']['hidden_layers']}, omega {res['settings']['omega']:g}")  # fmt: skip
        ax.axhline(1 - TARGET_R2, color="k", ls="--", lw=1, label="R2 = 0.995")
        ax.set_xlabel("training steps (2 frames each)")
        ax.set_ylabel("1 - R2")
        ax.set_title("siren_txy on the CPU (2 cores)")
        ax.legend(fontsize=8)
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=120)


if __name__ == "__main__":
    main()
