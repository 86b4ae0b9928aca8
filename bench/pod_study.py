"""POD (truncated SVD), the POD + INR hybrid and the hash grid on each MPM field, on seen and held-out frames.

Every fit goes through the stage's code (``bench/inr_fits.py``: :func:`fieldlab.inr.represent.fit_representation`,
the stage's scores, the held-out split of :mod:`fieldlab.inr.heldout`) on the ``inr`` section of ``--params``
(48 frames of ``discs_3types``) with these changes:

- ``pod``: ranks ``--ranks`` on every frame, and again with every 4th interior frame held out (``heldout_every =
  4``; the held-out frames are answered by a cubic spline of the temporal coefficients);
- ``pod_residual``: rank ``HYBRID[field]`` plus a small hash grid on the residual, sized to store at most a tenth
  of the field's values (compression >= 10) and given the steps that train it in about 100 s on 2 cores; on every
  frame and, for ``--heldout-fields``, with every 4th frame held out;
- ``ngp`` (the default hash grid, ``--ngp-steps`` steps) with every 4th frame and a tenth of the particles held
  out, on ``--heldout-fields``: the INR's answer between frames and between particles.

Prints JSON per field (each fit: model, rank, R2, compression, seconds, held-out R2); every fit is appended to
``--trials`` (one JSON line: tag, inr, metrics) for ``bench/landscape_report.py``.

Run (about 15 min on 2 cores)::

    python bench/pod_study.py --trials docs/landscape/pod_trials.jsonl > docs/landscape/pod_study.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from inr_fits import InProcessFits  # bench/inr_fits.py

from fieldlab.config import load_config

#: the hybrid per field: POD rank, residual hash grid (levels, log2 table size, MLP width) and training steps
HYBRID = {
    "Jp": {"pod": {"rank": 2}, "ngp": {"levels": 10, "log2_table_size": 10, "mlp_width": 32}, "total_steps": 1200},
    "F": {"pod": {"rank": 8}, "ngp": {"levels": 16, "log2_table_size": 11, "mlp_width": 32}, "total_steps": 800},
    "S": {"pod": {"rank": 8}, "ngp": {"levels": 16, "log2_table_size": 11, "mlp_width": 32}, "total_steps": 800},
    "C": {"pod": {"rank": 8}, "ngp": {"levels": 16, "log2_table_size": 11, "mlp_width": 32}, "total_steps": 800},
}
KEYS = ("final_r2", "slope", "compression_ratio", "training_time", "total_params", "heldout_frames_r2",
        "heldout_particles_r2")  # fmt: skip


def summary(params: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    return {"model": params["model"], "rank": params.get("pod", {}).get("rank"),
            "heldout_every": params.get("heldout_every", 0), **{k: metrics.get(k) for k in KEYS}}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--fields", nargs="+", default=["F", "Jp", "S", "C"])
    ap.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 48, 96])
    ap.add_argument("--heldout-fields", nargs="*", default=["F", "Jp"])
    ap.add_argument("--ngp-steps", type=int, default=1000)
    ap.add_argument("--parts", nargs="+", default=["pod", "hybrid", "ngp"], choices=["pod", "hybrid", "ngp"])
    ap.add_argument("--trials", type=Path, default=None, help="append every fit here (JSON lines)")
    args = ap.parse_args()
    fit = InProcessFits(load_config(args.params), args.trials, tag="pod_study")
    base = {"n_training_frames": 48, "heldout_particles": 0.0}
    out: dict[str, list[dict[str, Any]]] = {f: [] for f in args.fields}
    plan: list[dict[str, Any]] = []
    for field in args.fields:
        common = {**base, "field_name": field}
        if "pod" in args.parts:
            for every in (0, 4):
                plan += [{**common, "model": "pod", "pod": {"rank": r}, "heldout_every": every} for r in args.ranks]
        if "hybrid" in args.parts:
            everies = (0, 4) if field in args.heldout_fields else (0,)
            plan += [{**common, "model": "pod_residual", **HYBRID[field], "heldout_every": e} for e in everies]
        if "ngp" in args.parts and field in args.heldout_fields:
            plan.append({**common, "model": "ngp", "total_steps": args.ngp_steps, "heldout_every": 4,
                         "heldout_particles": 0.1})  # fmt: skip
    for params in plan:
        out[params["field_name"]].append(summary(params, fit(params)))
    print(json.dumps({"frames": 48, "fields": out}, indent=1))


if __name__ == "__main__":
    main()
