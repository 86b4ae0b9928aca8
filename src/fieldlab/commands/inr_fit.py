"""``fieldlab inr-fit``: fit one INR to one MPM field outside DVC (same code and outputs as the inr_block stage)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--out", default=".", help="root of the outputs (artifacts/inr, metrics, plots); default .")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. inr.model=ngp")


def run(args: argparse.Namespace) -> int:
    import json

    from fieldlab.config import load_config
    from fieldlab.inr.block import INROutputs, run_inr_block

    cfg = load_config(args.params, args.overrides)
    metrics = run_inr_block(cfg.inr, cfg.seed, INROutputs().under(args.out), progress=not args.quiet)
    print(json.dumps(metrics, indent=2))
    return 0
