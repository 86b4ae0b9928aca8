"""``fieldlab explore``: run (or resume) the UCB exploration loop over INR configurations."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--blocks", type=int, default=None, help="number of blocks (default: explore.n_blocks)")
    parser.add_argument("--iters", type=int, default=None, help="iterations per block (default: explore.n_iter_block)")
    parser.add_argument("--out", default="experiments/explore", help="output directory (journal, memory, pictures)")
    parser.add_argument(
        "--no-dvc",
        action="store_true",
        help="run the stage in a subprocess instead of dvc exp run (explore.parallel > 1: k at once, on this machine)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the study recorded in --out")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of explore.* (e.g. ucb_c)")


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through subprocess.run, which kills the running fit


def run(args: argparse.Namespace) -> int:
    from fieldlab.config import apply_overrides, config_from_dict, read_params
    from fieldlab.errors import ConfigError
    from fieldlab.explore.driver import Study, run_study

    bad = [o for o in args.overrides if not o.startswith("explore.") and not o.startswith("seed=")]
    if bad:
        raise ConfigError(f"override {bad[0]!r}: expected explore.KEY=VALUE or seed=N (inr.* is the baseline)")
    raw = apply_overrides(read_params(args.params), args.overrides)
    raw.pop("inr", None)  # the baseline to explore: read raw by the driver, validated by the stage itself
    cfg = config_from_dict(raw, source=args.params)
    blocks = cfg.explore.n_blocks if args.blocks is None else args.blocks
    iters = cfg.explore.n_iter_block if args.iters is None else args.iters
    if blocks < 1 or iters < 1:
        raise ConfigError(f"--blocks {blocks} --iters {iters}: expected positive integers")
    workspace = Path(args.params).resolve().parent
    baseline = Path(args.out) / "baseline_params.yaml"
    if args.resume and baseline.is_file():
        read_params(baseline)  # the resumed study's baseline: one error line if it is empty or not a YAML mapping
    study = Study(workspace, Path(args.out).resolve(), blocks, iters, use_dvc=not args.no_dvc, resume=args.resume)
    signal.signal(signal.SIGTERM, _terminate)
    nodes = run_study(cfg, study)
    ok = [n for n in nodes if n.r2 is not None]
    best = max(ok, key=lambda n: n.r2) if ok else None
    print(
        f"explore: {len(nodes)} nodes, {len(nodes) - len(ok)} failed"
        + (f", best R2 {best.r2:.5f} at node {best.id} ({best.exp_name or 'no dvc'})" if best else "")
    )
    return 0 if ok else 1
