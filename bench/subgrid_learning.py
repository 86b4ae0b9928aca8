"""The sub-grid corrector's learning curve in fine limbs: trained on the first N limbs of train_2x/, scored at 2x.

For each N the corrector is trained as the ``train_subgrid`` stage trains it (same params, until validation stops
improving, epoch picked on val_2x/) and scored on test_2x/ and ood_2x/ as eval_sr scores it (the evaluation's loss
masks, rel L2 against the 1 mm FEM solution), beside its coarse start (the 2 mm solve it corrects)::

    python bench/subgrid_learning.py --limbs 10 20 40 80 > bench/results/subgrid_learning.json

Prints one JSON object: per N the validation error, the test and ood errors (mean and max), the epochs run and the
training seconds, and the error head's Spearman rank correlation with the true errors. One training at a time:
run it alone on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from fieldlab.config import load_config
from fieldlab.potential.data.loader import split_files
from fieldlab.potential.data.subgrid_inputs import coarse_start
from fieldlab.potential.metrics import field_relative_l2
from fieldlab.potential.models.trained import load_subgrid
from fieldlab.potential.prediction.subgrid import head_estimate, predict_with_error
from fieldlab.potential.schema import load_sample
from fieldlab.potential.training.subgrid import loss_mask_of, run_subgrid_training


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def scores(cfg, trained, split: str) -> dict[str, float]:
    """Mean and max rel L2 of the corrector and of its start on ``data.root/<split>``, and how its error head ranks
    the limbs (Spearman's rho of estimate and truth)."""
    errors, starts, estimates = [], [], []
    for f in split_files(cfg.data.root, split):
        s = load_sample(f)
        mask = loss_mask_of(cfg, s, [float(v) * 2 for v in s.spacing], str(f))[0].numpy().astype(bool)
        u, magnitude = predict_with_error(trained, s)
        errors.append(field_relative_l2(u, s.u, mask))
        starts.append(field_relative_l2(coarse_start(s, 2, trained.start_tol), s.u, mask))
        if magnitude is not None:
            estimates.append(head_estimate(trained, u, magnitude, mask))
    if not errors:
        fail(f"{cfg.data.root}/{split}: no fine samples; expected prepare's {split}/")
    out = {
        "rel_l2": float(np.mean(errors)),
        "rel_l2_max": float(np.max(errors)),
        "start_rel_l2": float(np.mean(starts)),
    }
    if estimates:
        out["estimate_spearman"] = float(spearmanr(estimates, errors)[0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limbs", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    available = len(split_files(load_config(args.params).data.root, "train_2x"))
    if not args.limbs or min(args.limbs) < 1 or max(args.limbs) > available:
        fail(f"--limbs {args.limbs}: expected counts in 1..{available} (train_2x/ holds {available})")
    out: dict[str, dict] = {}
    for n in args.limbs:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(args.params, [*args.overrides, f"subgrid.max_train_samples={n}", f"subgrid.root={tmp}"])
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):  # the epochs' lines; stdout is the JSON
                summary = run_subgrid_training(cfg, tmp, Path(tmp) / "m.json", Path(tmp) / "h.csv")
            seconds = time.perf_counter() - t0
            trained = load_subgrid(Path(tmp) / "checkpoints" / "best.pt", precision=cfg.subgrid.precision)
            out[str(n)] = {
                "val_rel_l2": summary["best_val_rel_l2"],
                "best_epoch": summary["best_epoch"],
                "epochs_run": summary["epochs_run"],
                "train_seconds": seconds,
                **{split: scores(cfg, trained, split) for split in ("test_2x", "ood_2x")},
            }
        print(json.dumps({n: out[str(n)]}), file=sys.stderr, flush=True)  # each point as soon as it is measured
    print(json.dumps({"limbs": out}, indent=2))


if __name__ == "__main__":
    main()
