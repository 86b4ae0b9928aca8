"""Stage train_unet / train_fno: train one backbone on data/potential.

Writes experiments/<backbone>/ (checkpoints, TensorBoard), metrics/train_<backbone>.json and
plots/train_<backbone>.csv. Multi-GPU: ``torchrun --nproc-per-node N stages/train.py --backbone fno``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fieldlab.cli import guarded
from fieldlab.config import load_config, stage_parser, to_dict


def main() -> int:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=("unet", "fno"), required=True)
    parser.add_argument(
        "--resume", action="store_true", help="continue from checkpoints/last.pt (an error if it is missing)"
    )
    args = parser.parse_args()

    def run() -> int:
        from fieldlab.core.checkpoint import check_resume, resume_checkpoint
        from fieldlab.potential.training.operator import run_training

        cfg = load_config(args.params, args.overrides)
        b = args.backbone
        if args.resume:  # a missing or foreign checkpoint is an error, not a fresh start
            check_resume(resume_checkpoint(Path(cfg.log.root) / b), b, to_dict(cfg.model))
        run_training(
            cfg,
            b,
            Path(cfg.log.root) / b,
            metrics_json=f"metrics/train_{b}.json",
            history_csv=f"plots/train_{b}.csv",
            resume=args.resume,
        )
        return 0

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
