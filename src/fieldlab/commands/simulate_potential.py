"""``fieldlab simulate-potential``: the ``prepare`` stage outside DVC, one sample, or the README figure."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--root", default=None, help="output folder (default: data.root)")
    parser.add_argument("--sample", type=int, default=None, metavar="I", help="solve only train sample I and report")
    parser.add_argument("--figure", default=None, metavar="PNG", help="draw sample --sample (default 0) to PNG")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as dvc exp run -S")


def run(args: argparse.Namespace) -> int:
    from fieldlab.config import load_config
    from fieldlab.potential.physics.corpus import generate_corpus, import_raw, solve_sample

    cfg = load_config(args.params, args.overrides)
    if args.sample is not None or args.figure is not None:
        index = args.sample or 0
        sample, info, limb = solve_sample(cfg.seed, "train", index, cfg.data.grid, 1, cfg.physics)
        print(json.dumps({"index": index, "grid": list(sample.shape), **info.to_dict(), "limb": limb.to_dict()}))
        if args.figure is not None:
            from fieldlab.potential.physics.figures import plot_sample

            plot_sample(sample, args.figure)
            print(f"figure: {args.figure}")
        return 0
    if cfg.data.source == "raw":
        manifest = import_raw(cfg.data, args.root)
    else:
        manifest = generate_corpus(cfg.data, cfg.physics, cfg.seed, args.root, progress=not args.no_progress)
    print(json.dumps(manifest.get("summary", {"files": len(manifest["samples"])}), indent=2))
    return 0
