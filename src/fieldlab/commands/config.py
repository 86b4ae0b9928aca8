"""``fieldlab config``: print the resolved configuration after overrides, or the first error in it."""

from __future__ import annotations

import argparse

import yaml

from fieldlab.config import load_config, to_dict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--section", default=None, help="print only this section")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as dvc exp run -S")


def run(args: argparse.Namespace) -> int:
    cfg = to_dict(load_config(args.params, args.overrides))
    if args.section is not None:
        if args.section not in cfg:
            from fieldlab.errors import ConfigError

            raise ConfigError(f"--section {args.section!r}: expected one of {', '.join(cfg)}")
        cfg = {args.section: cfg[args.section]}
    print(yaml.safe_dump(cfg, sort_keys=False), end="")
    return 0
