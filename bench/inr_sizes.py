"""The smallest hash-grid INR that still reaches R2 >= 0.995 on each MPM field (compression as an axis).

A ladder of ngp sizes, largest first (levels x 2^log2_table_size x features hash table plus a ReLU MLP), each fitted
with the ``inr`` section of ``--params`` otherwise unchanged (48 frames, ``--steps`` steps per field, the stage's
scores, ``bench/inr_fits.py``). Per field a bisection over the ladder finds the last rung that reaches the target,
assuming R2 falls as the model shrinks (every rung it fits is reported, so a violation shows). Prints JSON: per
field the fitted rungs (parameters, compression = values / parameters, R2, slope, seconds) and the smallest passing
one.

Run (about 35 min on 2 cores)::

    python bench/inr_sizes.py --fields Jp F C S --steps Jp=1000 F=3000 C=3000 S=3000 \\
        --trials docs/landscape/size_trials.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from inr_fits import InProcessFits  # bench/inr_fits.py

from fieldlab.config import load_config

TARGET_R2 = 0.995
#: (levels, log2_table_size, features, mlp_width), largest first; the default ngp is the first rung
RUNGS = [(16, 15, 2, 64), (16, 13, 2, 64), (16, 11, 2, 32), (12, 10, 2, 32), (8, 9, 2, 32), (8, 8, 2, 16),
         (6, 7, 2, 16)]  # fmt: skip


def rung_params(rung: tuple[int, int, int, int], field: str, steps: int) -> dict[str, Any]:
    levels, log2t, features, width = rung
    ngp = {"levels": levels, "log2_table_size": log2t, "features": features, "mlp_width": width}
    return {"model": "ngp", "field_name": field, "n_training_frames": 48, "total_steps": steps, "ngp": ngp}


def smallest_passing(fit: Any, field: str, steps: int) -> dict[str, Any]:
    """Bisection for the last rung with R2 >= target; every fit made on the way."""
    rows: dict[int, dict[str, Any]] = {}

    def passes(i: int) -> bool:
        m = fit(rung_params(RUNGS[i], field, steps))
        rows[i] = {
            "rung": i,
            "ngp": dict(zip(("levels", "log2_table_size", "features", "mlp_width"), RUNGS[i], strict=True)),
        }
        rows[i].update({k: m.get(k) for k in ("total_params", "compression_ratio", "final_r2", "slope", "wall_s")})
        return m.get("final_r2") is not None and m["final_r2"] >= TARGET_R2

    lo, hi, best = 0, len(RUNGS) - 1, None  # invariant: every rung < lo passed, every rung > hi failed
    while lo <= hi:
        mid = (lo + hi) // 2
        if passes(mid):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return {"fits": [rows[i] for i in sorted(rows)], "smallest_passing": None if best is None else rows[best]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--fields", nargs="+", default=["Jp", "F", "S", "C"])
    ap.add_argument("--steps", nargs="+", default=["1000"], help="N for every field, or FIELD=N each")
    ap.add_argument("--trials", type=Path, default=None, help="append every fit here (JSON lines)")
    args = ap.parse_args()
    steps = {f: int(args.steps[0]) for f in args.fields} if "=" not in args.steps[0] else {}
    steps.update({k: int(v) for k, _, v in (s.partition("=") for s in args.steps if "=" in s)})
    fits = InProcessFits(load_config(args.params), args.trials, tag="sizes")
    out = {f: {"steps": steps[f], **smallest_passing(fits, f, steps[f])} for f in args.fields}
    print(json.dumps({"target_r2": TARGET_R2, "frames": 48, "fields": out}, indent=1))


if __name__ == "__main__":
    main()
