"""``fieldlab eval-rivals``: run the classical rivals of the test splits once and write them for ``eval-sr``."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--out", default=None, help="output JSON (default: eval.rivals_file)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as dvc exp run -S")


def run(args: argparse.Namespace) -> int:
    import json

    from fieldlab.config import load_config
    from fieldlab.core.io import write_json
    from fieldlab.potential.evaluation.rivals import classical_rivals

    cfg = load_config(args.params, args.overrides)
    out = args.out or cfg.eval.rivals_file
    result = classical_rivals(cfg)
    write_json(out, result)
    points = sum(len(v) for v in result["baselines"].values())
    print(json.dumps({"rivals_file": str(out), "rivals": len(result["baselines"]), "points": points}))
    return 0
