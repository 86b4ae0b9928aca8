"""``fieldlab predict``: a trained checkpoint on your own sample files, with an error estimate for each."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="trained checkpoint (experiments/<backbone>/checkpoints)")
    parser.add_argument("samples", nargs="+", metavar="SAMPLE.npz", help="sample files in the corpus format")
    parser.add_argument("--out", required=True, metavar="DIR", help="writes DIR/<name>.npz per sample")
    parser.add_argument("--params", default="params.yaml", help="data.coord_range and loss settings (as eval-sr)")
    parser.add_argument("--device", default=None, help="default: params device")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override")


def run(args: argparse.Namespace) -> int:
    from fieldlab.config import load_config
    from fieldlab.potential.prediction.files import predict_files

    cfg = load_config(args.params, args.overrides)
    for result in predict_files(cfg, args.checkpoint, args.samples, args.out, device=args.device):
        print(result.line)
    return 0
