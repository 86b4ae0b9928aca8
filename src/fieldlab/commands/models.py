"""``fieldlab models --summary``: parameter counts of every registered backbone at the configured sizes."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--summary", action="store_true", help="print parameter counts per backbone and part")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as dvc exp run -S")


def summary_rows(params: str, overrides: list[str]) -> list[dict[str, int | str]]:
    """One row per backbone: real trainable numbers of the encoder, backbone, conditioner and in total."""
    from fieldlab.config import load_config
    from fieldlab.potential.models.wrapper import BACKBONES, build_model, count_parameters

    cfg = load_config(params, overrides).model
    rows: list[dict[str, int | str]] = []
    for name in BACKBONES:
        model = build_model(cfg, name)
        parts = {"encoder": model.encoder, "backbone": model.backbone, "conditioner": model.conditioner}
        row: dict[str, int | str] = {"name": name}
        row.update({part: 0 if m is None else count_parameters(m) for part, m in parts.items()})
        row["total"] = count_parameters(model)
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    if not args.summary:
        print("fieldlab models: nothing to do (use --summary)")
        return 0
    rows = summary_rows(args.params, args.overrides)
    print(f"{'backbone':<10}{'total':>14}{'encoder':>12}{'backbone':>14}{'conditioner':>14}")
    for r in rows:
        print(f"{r['name']:<10}{r['total']:>14,}{r['encoder']:>12,}{r['backbone']:>14,}{r['conditioner']:>14,}")
    print("(real trainable numbers; a complex spectral weight counts twice)")
    return 0
