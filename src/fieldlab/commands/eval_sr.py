"""``fieldlab eval-sr``: evaluate the trained ``model.backbone`` on the test split at base and 2x (zero shot)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--backbone", choices=("unet", "fno"), default=None, help="default: model.backbone")
    parser.add_argument("--checkpoint", default=None, help="default: <log.root>/<backbone>/checkpoints/best.pt")
    parser.add_argument("--metrics", default="metrics/eval_sr.json", help="output JSON")
    parser.add_argument("--figures", default="plots/eval_sr", help="folder for the error-map figures")
    parser.add_argument("--rivals", default=None, help="the classical rivals (default: eval.rivals_file)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as dvc exp run -S")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from fieldlab.config import load_config
    from fieldlab.potential.evaluation.zero_shot import run_eval

    cfg = load_config(args.params, args.overrides)
    backbone = args.backbone or cfg.model.backbone
    ckpt = Path(args.checkpoint or Path(cfg.log.root) / backbone / "checkpoints" / "best.pt")
    rivals = args.rivals or cfg.eval.rivals_file
    # another backbone's checkpoint is an error; so is a rivals file made for another corpus, prior or mask
    result = run_eval(cfg, ckpt, args.metrics, args.figures, backbone=backbone, rivals_file=rivals)
    keys = ("backbone", "ratio_x2_base")
    print(json.dumps({**{k: result[k] for k in keys}, "base": result["base"]["rel_l2"], "x2": result["x2"]["rel_l2"]}))
    return 0
