"""Stage eval_sr: the checkpoint of model.backbone on the test split at base and at 2x (zero shot).

Writes metrics/eval_sr.json and, under plots/eval_sr/, the error-map figures, per_sample.json and the accuracy-time
front (front_base.csv, front_x2.csv: `dvc plots show`; front.png).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The hybrid alternates torch (OpenMP) and the solver's sweeps (numpy, pyamg): OpenMP workers that spin after a
# parallel region take a core from the sweeps (on 2 cores the refined base time went 0.83 -> 0.74 s). Set before
# torch is imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fieldlab.cli import guarded
from fieldlab.config import load_config, stage_parser


def main() -> int:
    args = stage_parser(__doc__.splitlines()[0]).parse_args()

    def run() -> int:
        from fieldlab.potential.evaluation.zero_shot import run_eval

        cfg = load_config(args.params, args.overrides)
        ckpt = Path(cfg.log.root) / cfg.model.backbone / "checkpoints" / "best.pt"
        rivals = cfg.eval.rivals_file  # the eval_rivals stage's output, checked against this run
        metrics = cfg.eval.metrics_file  # fieldlab predict reads its 2x verdict there
        run_eval(cfg, ckpt, metrics, "plots/eval_sr", backbone=cfg.model.backbone, rivals_file=rivals)
        return 0

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
