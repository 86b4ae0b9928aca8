"""Stage eval_sr: the checkpoint of model.backbone on the test split at base and at 2x (zero shot).

Writes metrics/eval_sr.json and the error-map figures under plots/eval_sr/.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fieldlab.cli import guarded
from fieldlab.config import load_config, stage_parser


def main() -> int:
    args = stage_parser(__doc__.splitlines()[0]).parse_args()

    def run() -> int:
        from fieldlab.potential.evaluate import run_eval

        cfg = load_config(args.params, args.overrides)
        ckpt = Path(cfg.log.root) / cfg.model.backbone / "checkpoints" / "best.pt"
        run_eval(cfg, ckpt, "metrics/eval_sr.json", "plots/eval_sr", backbone=cfg.model.backbone)
        return 0

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
