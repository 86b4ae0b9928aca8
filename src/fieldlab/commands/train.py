"""``fieldlab train``: train one operator backbone outside DVC (``torchrun --nproc-per-node N`` for DDP)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--backbone", choices=("unet", "fno"), default=None, help="default: model.backbone")
    parser.add_argument("--out", default=None, help="run folder (default: <log.root>/<backbone>)")
    parser.add_argument("--metrics", default=None, help="summary JSON (default: metrics/train_<backbone>.json)")
    parser.add_argument("--plots", default=None, help="history CSV (default: plots/train_<backbone>.csv)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from <out>/checkpoints/last.pt (an error if it is missing)"
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as dvc exp run -S")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from fieldlab.config import load_config, to_dict
    from fieldlab.core.checkpoint import check_resume, resume_checkpoint
    from fieldlab.potential.training.operator import run_training

    cfg = load_config(args.params, args.overrides)
    backbone = args.backbone or cfg.model.backbone
    out = Path(args.out or Path(cfg.log.root) / backbone)
    if args.resume:  # before any output is touched: a missing or foreign checkpoint is an error, not a fresh start
        check_resume(resume_checkpoint(out), backbone, to_dict(cfg.model))
    summary = run_training(
        cfg,
        backbone,
        out,
        metrics_json=args.metrics or f"metrics/train_{backbone}.json",
        history_csv=args.plots or f"plots/train_{backbone}.csv",
        resume=args.resume,
    )
    print(json.dumps({k: summary[k] for k in ("backbone", "best_val_rel_l2", "params", "train_time_s")}))
    return 0
